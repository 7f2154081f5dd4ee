/**
 * fairseq-style BLEU, mirroring `fairseq-score` of fairseq v0.10.2 (fairseq_cli/score.py) with
 * `bleu.Scorer` (fairseq/scoring/bleu.py) and its C helper (fairseq/clib/libbleu/libbleu.cpp).
 *
 * What that pipeline does, and so what this file does:
 * - each line goes through `Dictionary.encode_line`: runs of whitespace become one space, the line
 *   is stripped and split on whitespace, and an end-of-sentence symbol `</s>` is appended;
 *   `--ignore-case` lowercases the raw line first;
 * - the literal symbols `<pad>`, `</s>`, `<unk>` (and `<s>`) are the dictionary's special ids:
 *   leading pads are trimmed, trailing `</s>`/pads are trimmed but never the first token (so an
 *   empty line still counts as one `</s>` token), and an unk in the *reference* never matches;
 * - clipped n-gram matches for n = 1..4 are summed over the corpus; no smoothing;
 *   BP = min(1, exp(1 - reflen/syslen)); a zero precision makes BLEU 0.
 * `--sentence-bleu` scores each line with a fresh scorer made by `reset(one_init=True)`: the
 * match and count of orders 2..4 start at 1 (add-one smoothing), order 1 starts at 0.
 *
 * Deliberate difference: fairseq zips sys and ref and silently drops the extra lines of the
 * longer file; here a line-count mismatch is an error.
 */
import { DifformerError } from '../errors.js';

/** Sufficient statistics of fairseq's BleuStat struct (always 4 orders, like libbleu). */
export interface BleuStats {
  reflen: number;
  predlen: number;
  /** match[n-1]: clipped matches of n-grams. */
  match: number[];
  /** count[n-1]: n-grams in the system output. */
  count: number[];
}

export interface FairseqBleuOptions {
  /** n-gram order used for the score, 1..4 (default 4). */
  order?: number;
  /** Lowercase both sides first (fairseq-score --ignore-case). */
  ignoreCase?: boolean;
  /** The unknown-word symbol; in the reference it never matches (default '<unk>'). */
  unk?: string;
}

/** Error codes used by the metrics for input problems; the same ones src/data/text.ts uses. */
export const LINE_MISMATCH_CODE = 'DIFFORMER_LINE_COUNT_MISMATCH' as const;
export const EMPTY_CODE = 'DIFFORMER_EMPTY_CORPUS' as const;

// ---------------------------------------------------------------------------------------------
// Python-compatible string helpers, shared with sacrebleu.ts.

/** Characters Python's str.split()/strip() and `re` `\s` treat as whitespace (str.isspace()). */
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_TOKEN_RE = new RegExp(`[^${PY_WS}]+`, 'gu');
const PY_RSTRIP_RE = new RegExp(`[${PY_WS}]+$`, 'u');

/** Python `s.split()`: JS `\s` differs from Python's whitespace set, so the set is spelled out. */
export function pySplit(s: string): string[] {
  return s.match(PY_TOKEN_RE) ?? [];
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(PY_RSTRIP_RE, '');
}

/**
 * Python `format(x, '.{digits}f')`. JS toFixed rounds an exact binary tie (e.g. 1.0625 to 3
 * places) away from zero while Python rounds it to even, which would change printed ratios.
 */
export function pyFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const plain = x.toFixed(digits);
  if (Math.abs(x) >= 1e21) return plain;
  const exact = Math.abs(x).toFixed(100); // exact decimal expansion of any double >= 2^-47
  const dot = exact.indexOf('.');
  const rest = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(rest)) return plain;
  const kept = exact.slice(0, digits > 0 ? dot + 1 + digits : dot);
  const lastDigit = Number(kept[kept.length - 1]);
  if (lastDigit % 2 !== 0) return plain; // odd: rounding away from zero is also round-to-even
  return (x < 0 ? '-' : '') + kept;
}

// ---------------------------------------------------------------------------------------------
// fairseq Dictionary + libbleu emulation.

const BOS = 0;
const PAD = 1;
const EOS = 2;
const UNK = 3;
/** What Scorer.add writes over unk ids of the reference so they never match. */
const REF_UNK = -999;

/** A growing symbol table like the fresh `Dictionary()` fairseq-score builds (add_if_not_exist). */
class SymbolIds {
  private readonly ids = new Map<string, number>();
  private next = 4;
  constructor(unk: string) {
    this.ids.set('<s>', BOS);
    this.ids.set('<pad>', PAD);
    this.ids.set('</s>', EOS);
    this.ids.set(unk, UNK);
  }
  /** Dictionary.encode_line: whitespace-normalise, split, map to ids, append eos. */
  encodeLine(line: string): number[] {
    const out: number[] = [];
    for (const w of pySplit(line)) {
      let id = this.ids.get(w);
      if (id === undefined) {
        id = this.next++;
        this.ids.set(w, id);
      }
      out.push(id);
    }
    out.push(EOS);
    return out;
  }
}

/** libbleu's bleu_trim: drop leading pads; drop trailing eos/pads but keep position 0. */
function trim(sent: number[]): number[] {
  let start = 0;
  while (start < sent.length && sent[start] === PAD) start++;
  const s = sent.slice(start);
  if (s.length === 0) return s;
  let end = s.length - 1;
  while (end > 0 && (s[end] === EOS || s[end] === PAD)) end--;
  return s.slice(0, end + 1);
}

/** libbleu's bleu_addngram: counts system n-grams and clipped matches against the reference. */
function addNgram(stats: BleuStats, n: number, ref: number[], pred: number[]): void {
  if (pred.length < n) return;
  stats.count[n - 1]! += pred.length - n + 1;
  if (ref.length < n) return;
  const avail = new Map<string, number>();
  for (let i = 0; i + n <= pred.length; i++) {
    const key = pred.slice(i, i + n).join(',');
    avail.set(key, (avail.get(key) ?? 0) + 1);
  }
  for (let i = 0; i + n <= ref.length; i++) {
    const key = ref.slice(i, i + n).join(',');
    const c = avail.get(key) ?? 0;
    if (c > 0) {
      stats.match[n - 1]!++;
      avail.set(key, c - 1);
    }
  }
}

/** Scorer.add: unk ids in the reference become -999, then libbleu's bleu_add. */
function addPair(stats: BleuStats, refIds: number[], predIds: number[]): void {
  const ref = trim(refIds.map((id) => (id === UNK ? REF_UNK : id)));
  const pred = trim(predIds);
  stats.reflen += ref.length;
  stats.predlen += pred.length;
  for (let n = 1; n <= 4; n++) addNgram(stats, n, ref, pred);
}

function checkOrder(order: number): void {
  if (!Number.isInteger(order) || order < 1 || order > 4) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `BLEU order must be an integer from 1 to 4 (fairseq keeps 4 orders), got ${order}`);
  }
}

function zeroStats(): BleuStats {
  return { reflen: 0, predlen: 0, match: [0, 0, 0, 0], count: [0, 0, 0, 0] };
}

/** Corpus statistics as `fairseq-score` accumulates them (sys[i] is scored against ref[i]). */
export function fairseqBleu(sys: readonly string[], ref: readonly string[], opts: FairseqBleuOptions = {}): BleuStats {
  checkOrder(opts.order ?? 4);
  if (sys.length !== ref.length) {
    throw new DifformerError(LINE_MISMATCH_CODE, `system output has ${sys.length} lines but the reference has ${ref.length}; they must pair up line by line`);
  }
  if (sys.length === 0) throw new DifformerError(EMPTY_CODE, 'cannot compute BLEU of an empty corpus (0 lines)');
  const dict = new SymbolIds(opts.unk ?? '<unk>');
  const stats = zeroStats();
  for (let i = 0; i < sys.length; i++) {
    const s = opts.ignoreCase ? sys[i]!.toLowerCase() : sys[i]!;
    const r = opts.ignoreCase ? ref[i]!.toLowerCase() : ref[i]!;
    addPair(stats, dict.encodeLine(r), dict.encodeLine(s));
  }
  return stats;
}

/** Statistics of one line as `fairseq-score --sentence-bleu` computes them (one_init smoothing). */
export function fairseqSentenceStats(sys: string, ref: string, opts: FairseqBleuOptions = {}): BleuStats {
  checkOrder(opts.order ?? 4);
  const dict = new SymbolIds(opts.unk ?? '<unk>');
  const stats: BleuStats = { reflen: 0, predlen: 0, match: [0, 1, 1, 1], count: [0, 1, 1, 1] };
  const s = opts.ignoreCase ? sys.toLowerCase() : sys;
  const r = opts.ignoreCase ? ref.toLowerCase() : ref;
  addPair(stats, dict.encodeLine(r), dict.encodeLine(s));
  return stats;
}

/** Scorer.precision(): match/count per order, 0 where nothing was counted. */
export function fairseqPrecisions(stats: BleuStats): number[] {
  return stats.match.map((m, i) => (stats.count[i]! > 0 ? m / stats.count[i]! : 0));
}

/** Scorer.brevity(). */
export function fairseqBrevity(stats: BleuStats): number {
  const r = stats.reflen / stats.predlen;
  return Math.min(1, Math.exp(1 - r));
}

/** Scorer.score(order), in 0..100. */
export function fairseqBleuScore(stats: BleuStats, order = 4): number {
  checkOrder(order);
  let psum = 0;
  for (const p of fairseqPrecisions(stats).slice(0, order)) psum += p > 0 ? Math.log(p) : -Infinity;
  return fairseqBrevity(stats) * Math.exp(psum / order) * 100;
}

/**
 * Sentence BLEU of one line exactly as `fairseq-score --sentence-bleu` computes it; the third
 * argument is the order or the full options.
 */
export function sentenceBleuFairseq(sys: string, ref: string, orderOrOpts: number | FairseqBleuOptions = 4): number {
  const opts = typeof orderOrOpts === 'number' ? { order: orderOrOpts } : orderOrOpts;
  return fairseqBleuScore(fairseqSentenceStats(sys, ref, opts), opts.order ?? 4);
}

/** Corpus counts in sacreBLEU's shape (a SacreBleuResult fits), e.g. from tokenized text. */
export interface NgramCounts {
  counts: readonly number[];
  totals: readonly number[];
  sysLen: number;
  refLen: number;
}

/** BleuStats from sacreBLEU-shaped counts, so other tokenizations can be printed fairseq's way. */
export function bleuStatsFromCounts(c: NgramCounts): BleuStats {
  const four = (xs: readonly number[]): number[] => [0, 1, 2, 3].map((i) => xs[i] ?? 0);
  return { reflen: c.refLen, predlen: c.sysLen, match: four(c.counts), count: four(c.totals) };
}

/**
 * Scorer.result_string(order):
 * `BLEU4 = 28.42, 60.1/34.2/22.1/14.8 (BP=1.000, ratio=1.023, syslen=1234, reflen=1206)`.
 */
export function formatFairseqBleu(statsOrCounts: BleuStats | NgramCounts, order = 4): string {
  checkOrder(order);
  const stats = 'counts' in statsOrCounts ? bleuStatsFromCounts(statsOrCounts) : statsOrCounts;
  const prec = fairseqPrecisions(stats)
    .slice(0, order)
    .map((p) => pyFixed(p * 100, 1))
    .join('/');
  const bp = pyFixed(fairseqBrevity(stats), 3);
  const ratio = pyFixed(stats.predlen / stats.reflen, 3);
  return `BLEU${order} = ${pyFixed(fairseqBleuScore(stats, order), 2)}, ${prec} (BP=${bp}, ratio=${ratio}, syslen=${stats.predlen}, reflen=${stats.reflen})`;
}
