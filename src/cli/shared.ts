/**
 * Helpers the compute subcommands share: the first pass over argv, backend start-up, the
 * dependencies a model is built with, and fairseq's subword post-processing.
 */
import { getLogger } from '../log.js';
import type { CommonOptions } from '../options.js';

export type { ModelDeps } from '../train/types.js';

/**
 * Reads `--name value` or `--name=value` from raw argv (the first pass). The last occurrence
 * wins, as in commander's full parse, so both passes agree.
 */
export function prescan(argv: string[], names: string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    for (const n of names) {
      if (a === n) found = argv[i + 1];
      else if (a.startsWith(`${n}=`)) found = a.slice(n.length + 1);
    }
  }
  return found;
}

/** Brings up the tfjs backend from the common flags (initBackend logs what it got and why). */
export async function startBackend(common: CommonOptions): Promise<string> {
  const log = getLogger();
  const { initBackend } = await import('../backend.js');
  const backend = await initBackend({
    backend: common.backend,
    threads: common.threads > 0 ? common.threads : undefined,
    wasmThreads: common.wasmThreads,
    log: (msg, fields) => log.info(fields ?? {}, msg),
  });
  return backend.name;
}

/** fairseq's --remove-bpe / --post-process: 'sentencepiece', 'wordpiece', 'subword_nmt', 'none' or a marker. */
export function postProcess(text: string, kind: string | undefined): string {
  if (!kind) return text;
  if (kind === 'sentencepiece') return text.replace(/ /g, '').replace(/\u2581/g, ' ').trim();
  // BERT WordPiece (preprocess --tokenizer wordpiece): '##' pieces join the previous one
  if (kind === 'wordpiece') return text.replace(/ ##/g, '').trim();
  if (kind === 'none') return text;
  const marker = kind === 'subword_nmt' ? '@@ ' : kind;
  return `${text} `.split(marker).join('').trimEnd();
}

