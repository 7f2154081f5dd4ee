/**
 * Evaluation metrics: fairseq-score BLEU (bleu.ts), sacreBLEU 2.x BLEU (sacrebleu.ts) and
 * rouge-score ROUGE (rouge.ts, porter.ts), plus the exact lines the score CLI prints for each.
 */
import { fairseqBleu, fairseqSentenceStats, formatFairseqBleu, LINE_MISMATCH_CODE, type FairseqBleuOptions } from './bleu.js';
import { formatSacreBleu, sacreBleuCorpus, sacreBleuResultSignature, type SacreBleuOptions } from './sacrebleu.js';
import { formatRouge, rougeScores, type RougeOptions, type RougeType } from './rouge.js';
import { DifformerError } from '../errors.js';

export {
  bleuStatsFromCounts,
  fairseqBleu,
  fairseqBleuScore,
  fairseqBrevity,
  fairseqPrecisions,
  fairseqSentenceStats,
  formatFairseqBleu,
  sentenceBleuFairseq,
  type BleuStats,
  type FairseqBleuOptions,
  type NgramCounts,
} from './bleu.js';
export {
  SACREBLEU_VERSION,
  computeSacreBleu,
  formatSacreBleu,
  sacreBleuCorpus,
  sacreBleuResultSignature,
  sacreBleuSignature,
  sacreSentenceBleu,
  sacreTokenize,
  tokenize13a,
  tokenizeChar,
  tokenizeIntl,
  type FormatSacreBleuOptions,
  type SacreBleuOptions,
  type SacreBleuResult,
  type SacreTokenizer,
  type SmoothMethod,
} from './sacrebleu.js';
export { formatRouge, rougePair, rougeScores, rougeTokenize, type RougeOptions, type RougeScore, type RougeType } from './rouge.js';
export { porterStem } from './porter.js';

/**
 * What `fairseq-score` prints (minus its echo of the parsed arguments): one `BLEU4 = ...` line,
 * or with `sentenceBleu` one `<i> BLEU4 = ...` line per sentence, i counting from 0.
 */
export function fairseqScoreLines(sys: readonly string[], ref: readonly string[], opts: FairseqBleuOptions & { sentenceBleu?: boolean } = {}): string[] {
  const order = opts.order ?? 4;
  if (!opts.sentenceBleu) return [formatFairseqBleu(fairseqBleu(sys, ref, opts), order)];
  if (sys.length !== ref.length) {
    throw new DifformerError(LINE_MISMATCH_CODE, `system output has ${sys.length} lines but the reference has ${ref.length}; they must pair up line by line`);
  }
  return sys.map((s, i) => `${i} ${formatFairseqBleu(fairseqSentenceStats(s, ref[i]!, opts), order)}`);
}

export interface SacreBleuLineOptions extends SacreBleuOptions {
  /** Decimals of the score (default 2). */
  width?: number;
  /** Print only the score. */
  scoreOnly?: boolean;
  /**
   * true (default): one line `BLEU|<signature> = ...` as sacreBLEU 2.x's text format prints it;
   * false: `BLEU = ...` followed by the signature on its own line.
   */
  inlineSignature?: boolean;
}

/** What `sacrebleu REF < SYS -f text` prints; refs[k][i] is the k-th reference of line i. */
export function sacreBleuLines(sys: readonly string[], refs: readonly (readonly string[])[], opts: SacreBleuLineOptions = {}): string[] {
  const result = sacreBleuCorpus(sys, refs, opts);
  const fmt = { width: opts.width ?? 2 };
  if (opts.scoreOnly) return [formatSacreBleu(result, { ...fmt, scoreOnly: true })];
  const signature = sacreBleuResultSignature(result);
  if (opts.inlineSignature ?? true) return [formatSacreBleu(result, { ...fmt, signature })];
  return [formatSacreBleu(result, fmt), signature];
}

/** ROUGE lines: the corpus mean of each requested type, `ROUGE-1 P/R/F = 45.12/40.03/41.20`. */
export function rougeLines(sys: readonly string[], ref: readonly string[], opts: RougeOptions<RougeType> = {}): string[] {
  return formatRouge(rougeScores<RougeType>(sys, ref, { stemmer: opts.stemmer ?? false, types: opts.types ?? ['rouge1', 'rouge2', 'rougeL'] }));
}
