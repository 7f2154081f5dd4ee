/**
 * Progress bars for long work. Drawn only when stderr is a terminal (never in CI logs or
 * when output is piped); otherwise a no-op so callers need no branches.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, payload?: Record<string, string | number>): void;
  increment(delta?: number, payload?: Record<string, string | number>): void;
  setTotal(total: number): void;
  stop(): void;
}

const noop: Progress = { update() {}, increment() {}, setTotal() {}, stop() {} };

export function createProgress(label: string, total: number, extraFormat = ''): Progress {
  if (!process.stderr.isTTY || process.env.DIFFORMER_NO_PROGRESS) return noop;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} |{bar}| {percentage}% {value}/{total} eta {eta_formatted}${extraFormat}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    update: (v, p) => bar.update(v, p),
    increment: (d = 1, p) => bar.increment(d, p),
    setTotal: (t) => bar.setTotal(t),
    stop: () => bar.stop(),
  };
}
