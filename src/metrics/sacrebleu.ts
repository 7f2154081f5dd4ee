/**
 * sacreBLEU-compatible BLEU, mirroring sacreBLEU 2.x (sacrebleu/metrics/bleu.py, metrics/base.py,
 * tokenizers/tokenizer_13a.py, tokenizer_re.py, tokenizer_intl.py, tokenizer_char.py):
 * - each segment is optionally lowercased, right-stripped and tokenized, then split on whitespace;
 * - references of a segment are merged by taking, per n-gram, the maximum count over references;
 *   the reference length is the closest one to the hypothesis length (the shorter on a tie);
 * - corpus statistics are summed and smoothed by `compute_bleu` ('exp' = NIST/mteval smoothing,
 *   'floor', 'add-k', 'none'), with the early "no match at all -> 0" stop of sacreBLEU >= 2.0.
 * Only the 13a, intl, none and char tokenizers are provided (no zh, ja-mecab, ko-mecab, spm).
 */
import { DifformerError } from '../errors.js';
import { EMPTY_CODE, LINE_MISMATCH_CODE, pyFixed, pyRstrip, pySplit } from './bleu.js';

/**
 * The sacreBLEU release whose BLEU this file reproduces, as printed in signatures. BLEU, its
 * tokenizers and its signature format are unchanged across 2.0-2.5; 2.4.0 (2023-12) is chosen
 * as a widely installed 2.x release.
 */
export const SACREBLEU_VERSION = '2.4.0';

export type SacreTokenizer = '13a' | 'intl' | 'none' | 'char';
export type SmoothMethod = 'exp' | 'floor' | 'add-k' | 'none';

export interface SacreBleuOptions {
  /** Tokenizer (default '13a'). */
  tokenize?: SacreTokenizer;
  /** Lowercase hypothesis and references (signature `case:lc`). */
  lowercase?: boolean;
  /** Smoothing method (default 'exp' for corpus and sentence BLEU). */
  smooth?: SmoothMethod;
  /** Value for 'floor' (default 0.1) and 'add-k' (default 1). */
  smoothValue?: number;
  /** Drop orders with no n-grams (default false for corpus, true for sentence BLEU). */
  effectiveOrder?: boolean;
  /** Highest n-gram order (default 4). */
  maxNgramOrder?: number;
}

export interface SacreBleuResult {
  /** BLEU in 0..100. */
  score: number;
  /** Matched n-grams per order (after add-k smoothing when used, like sacreBLEU). */
  counts: number[];
  /** System n-grams per order (after add-k smoothing when used). */
  totals: number[];
  /** Smoothed precisions per order, in 0..100. */
  precisions: number[];
  bp: number;
  ratio: number;
  sysLen: number;
  refLen: number;
  /** References per segment, or 'var' when segments have different numbers. */
  nrefs: number | 'var';
  /** Options with every default filled in, for the signature. */
  options: Required<Omit<SacreBleuOptions, 'smoothValue'>> & { smoothValue?: number };
}

const SMOOTH_DEFAULTS: Record<SmoothMethod, number | undefined> = { none: undefined, floor: 0.1, 'add-k': 1, exp: undefined };
const TOKENIZERS: readonly SacreTokenizer[] = ['13a', 'intl', 'none', 'char'];

// ---------------------------------------------------------------------------------------------
// Tokenizers. Regexes use the 'u' flag so they see code points, as Python str regexes do.

/** Characters mteval-v13a splits off everywhere: {|}~ [\]^_` space !"#$%& ()*+ :;<=>?@ and '/'. */
const RE_13A_SYMBOLS = /([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40/])/gu;
const RE_13A_PERIOD_COMMA_AFTER_NON_DIGIT = /([^0-9])([.,])/gu;
const RE_13A_PERIOD_COMMA_BEFORE_NON_DIGIT = /([.,])([^0-9])/gu;
const RE_13A_DASH_AFTER_DIGIT = /([0-9])(-)/gu;

/** sacreBLEU's Tokenizer13a (mteval-v13a.pl): unescape a few entities, then split punctuation. */
export function tokenize13a(line: string): string {
  let s = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (s.includes('&')) {
    s = s.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  }
  s = ` ${s} `;
  s = s.replace(RE_13A_SYMBOLS, ' $1 ');
  s = s.replace(RE_13A_PERIOD_COMMA_AFTER_NON_DIGIT, '$1 $2 ');
  s = s.replace(RE_13A_PERIOD_COMMA_BEFORE_NON_DIGIT, ' $1 $2');
  s = s.replace(RE_13A_DASH_AFTER_DIGIT, '$1 $2 ');
  return pySplit(s).join(' ');
}

const RE_INTL_PUNCT_AFTER_NON_DIGIT = /(\P{N})(\p{P})/gu;
const RE_INTL_PUNCT_BEFORE_NON_DIGIT = /(\p{P})(\P{N})/gu;
const RE_INTL_SYMBOL = /(\p{S})/gu;

/**
 * sacreBLEU's TokenizerV14International (mteval-v14.pl --international-tokenization): split
 * punctuation unless between digits, and split all symbols. No padding spaces, so a number
 * followed by a final period keeps the period, exactly as upstream.
 */
export function tokenizeIntl(line: string): string {
  let s = line.replace(RE_INTL_PUNCT_AFTER_NON_DIGIT, '$1 $2 ');
  s = s.replace(RE_INTL_PUNCT_BEFORE_NON_DIGIT, ' $1 $2');
  s = s.replace(RE_INTL_SYMBOL, ' $1 ');
  return pySplit(s).join(' ');
}

/** sacreBLEU's TokenizerChar: every code point becomes a token (whitespace then disappears). */
export function tokenizeChar(line: string): string {
  return Array.from(line).join(' ');
}

/** Tokenizes one segment the way BLEU._preprocess_segment does (lowercase, rstrip, tokenize). */
export function sacreTokenize(line: string, tokenize: SacreTokenizer = '13a', lowercase = false): string {
  const s = pyRstrip(lowercase ? line.toLowerCase() : line);
  switch (tokenize) {
    case '13a':
      return tokenize13a(s);
    case 'intl':
      return tokenizeIntl(s);
    case 'char':
      return tokenizeChar(s);
    case 'none':
      return s;
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics and scoring.

function resolve(opts: SacreBleuOptions, effectiveDefault: boolean): SacreBleuResult['options'] {
  const tokenize = opts.tokenize ?? '13a';
  const smooth = opts.smooth ?? 'exp';
  const maxNgramOrder = opts.maxNgramOrder ?? 4;
  if (!TOKENIZERS.includes(tokenize)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `unknown sacreBLEU tokenizer '${String(tokenize)}'; choose one of ${TOKENIZERS.join(', ')}`);
  }
  if (!(smooth in SMOOTH_DEFAULTS)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `unknown BLEU smoothing '${String(smooth)}'; choose one of exp, floor, add-k, none`);
  }
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `max n-gram order must be a positive integer, got ${maxNgramOrder}`);
  }
  if (opts.smoothValue !== undefined && !(Number.isFinite(opts.smoothValue) && opts.smoothValue >= 0)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `smoothing value must be a non-negative number, got ${opts.smoothValue}`);
  }
  const out: SacreBleuResult['options'] = {
    tokenize,
    lowercase: opts.lowercase ?? false,
    smooth,
    effectiveOrder: opts.effectiveOrder ?? effectiveDefault,
    maxNgramOrder,
  };
  if (opts.smoothValue !== undefined) out.smoothValue = opts.smoothValue;
  return out;
}

/** Counts of all n-grams of orders 1..maxOrder, keyed by the space-joined tokens. */
function ngramCounts(tokens: readonly string[], maxOrder: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** BLEU._get_closest_ref_len: closest reference length, the shorter one on a tie. */
function closestRefLen(hypLen: number, refLens: readonly number[]): number {
  let bestDiff = -1;
  let best = -1;
  for (const len of refLens) {
    const diff = Math.abs(hypLen - len);
    if (bestDiff === -1 || diff < bestDiff) {
      bestDiff = diff;
      best = len;
    } else if (diff === bestDiff && len < best) {
      best = len;
    }
  }
  return best;
}

/** Segment statistics [hypLen, refLen, correct_1..N, total_1..N] of pre-tokenized text. */
function segmentStats(hyp: string, refs: readonly string[], maxOrder: number): number[] {
  const refNgrams = new Map<string, number>();
  const refLens: number[] = [];
  for (const ref of refs) {
    const toks = pySplit(ref);
    refLens.push(toks.length);
    for (const [k, c] of ngramCounts(toks, maxOrder)) refNgrams.set(k, Math.max(refNgrams.get(k) ?? 0, c));
  }
  const hypToks = pySplit(hyp);
  const correct = new Array<number>(maxOrder).fill(0);
  const total = new Array<number>(maxOrder).fill(0);
  for (const [k, c] of ngramCounts(hypToks, maxOrder)) {
    const n = k.split(' ').length;
    total[n - 1]! += c;
    const r = refNgrams.get(k);
    if (r !== undefined) correct[n - 1]! += Math.min(c, r);
  }
  return [hypToks.length, closestRefLen(hypToks.length, refLens), ...correct, ...total];
}

/** sacreBLEU's my_log: log floored at a huge negative number instead of -inf. */
function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

export interface ComputeBleuOptions {
  smooth?: SmoothMethod;
  smoothValue?: number;
  effectiveOrder?: boolean;
  maxNgramOrder?: number;
}

/** BLEU.compute_bleu: BLEU from sufficient statistics (smooth defaults to 'none' like upstream). */
export function computeSacreBleu(
  correctIn: readonly number[],
  totalIn: readonly number[],
  sysLen: number,
  refLen: number,
  opts: ComputeBleuOptions = {},
): Omit<SacreBleuResult, 'nrefs' | 'options'> {
  const smooth = opts.smooth ?? 'none';
  const maxOrder = opts.maxNgramOrder ?? 4;
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[smooth] ?? 0;
  const correct = correctIn.slice(0, maxOrder);
  const total = totalIn.slice(0, maxOrder);
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const ratio = refLen ? sysLen / refLen : 0;
  const precisions = new Array<number>(maxOrder).fill(0);
  const base = { counts: correct, totals: total, precisions, bp, ratio, sysLen, refLen };
  if (!correct.some((c) => c !== 0)) return { score: 0, ...base };

  let smoothMteval = 1;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smooth === 'add-k' && n > 1) {
      correct[n - 1]! += smoothValue;
      total[n - 1]! += smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (opts.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (smooth === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (smooth === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / total[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
    }
  }
  let logSum = 0;
  for (const p of precisions.slice(0, effOrder)) logSum += myLog(p);
  return { score: bp * Math.exp(logSum / effOrder), ...base };
}

function scoreStreams(sys: readonly string[], refs: readonly (readonly string[])[], o: SacreBleuResult['options']): SacreBleuResult {
  if (refs.length === 0) throw new DifformerError('DIFFORMER_BAD_DATA', 'BLEU needs at least one reference stream');
  for (const [k, stream] of refs.entries()) {
    if (stream.length !== sys.length) {
      throw new DifformerError(LINE_MISMATCH_CODE, `system output has ${sys.length} lines but reference stream ${k + 1} has ${stream.length}; they must pair up line by line`);
    }
  }
  if (sys.length === 0) throw new DifformerError(EMPTY_CODE, 'cannot compute BLEU of an empty corpus (0 lines)');
  const n = o.maxNgramOrder;
  const sums = new Array<number>(2 + 2 * n).fill(0);
  const refCounts = new Set<number>();
  for (let i = 0; i < sys.length; i++) {
    // Like sacreBLEU, empty references are dropped, which allows a variable number per segment.
    const lineRefs = refs.map((s) => s[i]!).filter((r) => r !== '');
    if (lineRefs.length === 0) throw new DifformerError('DIFFORMER_BAD_DATA', `line ${i + 1} has only empty references`);
    refCounts.add(lineRefs.length);
    const hyp = sacreTokenize(sys[i]!, o.tokenize, o.lowercase);
    const toks = lineRefs.map((r) => sacreTokenize(r, o.tokenize, o.lowercase));
    segmentStats(hyp, toks, n).forEach((v, j) => (sums[j]! += v));
  }
  const core = computeSacreBleu(sums.slice(2, 2 + n), sums.slice(2 + n), sums[0]!, sums[1]!, o);
  return { ...core, nrefs: refCounts.size === 1 ? [...refCounts][0]! : 'var', options: o };
}

/**
 * Corpus BLEU like `sacrebleu.corpus_bleu(sys, refs)`: refs[k][i] is the k-th reference of
 * line i. Defaults: 13a, mixed case, exp smoothing, no effective order.
 */
export function sacreBleuCorpus(sys: readonly string[], refs: readonly (readonly string[])[], opts: SacreBleuOptions = {}): SacreBleuResult {
  return scoreStreams(sys, refs, resolve(opts, false));
}

/** Sentence BLEU like `sacrebleu.sentence_bleu(hyp, refs)` (exp smoothing, effective order on). */
export function sacreSentenceBleu(hyp: string, refs: readonly string[], opts: SacreBleuOptions = {}): SacreBleuResult {
  return scoreStreams([hyp], refs.map((r) => [r]), resolve(opts, true));
}

/**
 * The reproducibility signature sacreBLEU prints, e.g.
 * `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0`.
 */
export function sacreBleuSignature(opts: SacreBleuOptions & { nrefs?: number | 'var' } = {}): string {
  const o = resolve(opts, false);
  let smooth: string = o.smooth;
  const def = SMOOTH_DEFAULTS[o.smooth];
  if (def !== undefined) smooth += `[${pyFixed(o.smoothValue ?? def, 2)}]`;
  const parts = [
    `nrefs:${opts.nrefs ?? 1}`,
    `case:${o.lowercase ? 'lc' : 'mixed'}`,
    `eff:${o.effectiveOrder ? 'yes' : 'no'}`,
    `tok:${o.tokenize}`,
    `smooth:${smooth}`,
    `version:${SACREBLEU_VERSION}`,
  ];
  return parts.join('|');
}

/** Signature of a computed result (its resolved options and reference count). */
export function sacreBleuResultSignature(result: SacreBleuResult): string {
  return sacreBleuSignature({ ...result.options, nrefs: result.nrefs });
}

export interface FormatSacreBleuOptions {
  /** Decimals of the score (sacreBLEU --width, default 2). */
  width?: number;
  /** Put the signature after the metric name, as the sacreBLEU 2.x text output does. */
  signature?: string;
  /** Only the score (sacreBLEU --score-only). */
  scoreOnly?: boolean;
}

/**
 * BLEUScore.format(): `BLEU = 22.05 53.6/27.4/15.9/9.6 (BP = 1.000 ratio = 1.038 hyp_len = 1234
 * ref_len = 1189)`, or `BLEU|nrefs:1|...|version:2.4.0 = 22.05 ...` when a signature is given.
 */
export function formatSacreBleu(result: Pick<SacreBleuResult, 'score' | 'precisions' | 'bp' | 'ratio' | 'sysLen' | 'refLen'>, opts: FormatSacreBleuOptions = {}): string {
  const sc = pyFixed(result.score, opts.width ?? 2);
  if (opts.scoreOnly) return sc;
  const prec = result.precisions.map((p) => pyFixed(p, 1)).join('/');
  const verbose = `${prec} (BP = ${pyFixed(result.bp, 3)} ratio = ${pyFixed(result.ratio, 3)} hyp_len = ${result.sysLen} ref_len = ${result.refLen})`;
  const name = opts.signature ? `BLEU|${opts.signature}` : 'BLEU';
  return `${name} = ${sc} ${verbose}`;
}
