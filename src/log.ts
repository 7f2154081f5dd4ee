/**
 * Structured logging. Logs go to stderr so stdout stays for results (H-/D- lines, scores).
 * `--log-format json` prints one pino JSON object per line; `simple` prints fairseq-like
 * human lines through pino-pretty (synchronously, so nothing is lost on exit).
 */
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'simple' | 'json' | 'none';
export type { Logger };

let current: Logger | undefined;

export function createLogger(format: LogFormat = 'simple', name = 'difformer'): Logger {
  if (format === 'none') return pino({ enabled: false });
  if (format === 'json') {
    return pino({ name, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  }
  const stream = pretty({
    sync: true,
    destination: 2,
    colorize: process.stderr.isTTY === true,
    ignore: 'pid,hostname',
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss',
    singleLine: true,
  });
  return pino({ name, base: undefined }, stream);
}

/** The process-wide logger the CLI set up (a quiet default for library use and tests). */
export function getLogger(): Logger {
  if (!current) current = createLogger(process.env.DIFFORMER_LOG_FORMAT === 'json' ? 'json' : 'simple');
  return current;
}

export function setLogger(logger: Logger): void {
  current = logger;
}
