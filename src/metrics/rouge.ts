/**
 * ROUGE compatible with Google's `rouge-score` package (google-research/rouge: rouge_scorer.py,
 * tokenize.py, tokenizers.py, scoring.py):
 * - DefaultTokenizer: lowercase, every run of characters outside [a-z0-9] becomes a space, split
 *   on whitespace, optionally Porter-stem tokens longer than 3 characters (NLTK's stemmer, see
 *   porter.ts), keep only non-empty [a-z0-9]+ tokens;
 * - rougeN: clipped n-gram overlap; precision over the prediction's n-grams, recall over the
 *   target's (each denominator at least 1);
 * - rougeL: sentence-level LCS over the whole text; rougeLsum: summary-level union LCS with
 *   sentences split on newlines, as ROUGE-1.5.5 does;
 * - F = 2PR/(P+R), 0 when P+R = 0.
 * Corpus scores are the plain mean of the per-pair scores. rouge-score's BootstrapAggregator
 * reports a bootstrap estimate of that mean as "mid" (numpy RNG, so it differs in the 3rd-4th
 * decimal); the bootstrap itself is not reproduced here.
 */
import { DifformerError } from '../errors.js';
import { EMPTY_CODE, LINE_MISMATCH_CODE, pyFixed } from './bleu.js';
import { porterStem } from './porter.js';

export type RougeType = 'rouge1' | 'rouge2' | 'rougeL' | 'rougeLsum';

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export interface RougeOptions<T extends RougeType = RougeType> {
  /** Which scores to compute (default rouge1, rouge2, rougeL). */
  types?: readonly T[];
  /** Porter-stem tokens longer than 3 characters (rouge-score use_stemmer). */
  stemmer?: boolean;
}

export type DefaultRougeType = 'rouge1' | 'rouge2' | 'rougeL';
const DEFAULT_TYPES: readonly DefaultRougeType[] = ['rouge1', 'rouge2', 'rougeL'];
const ALL_TYPES: readonly RougeType[] = ['rouge1', 'rouge2', 'rougeL', 'rougeLsum'];

/** rouge-score's tokenize.tokenize with the DefaultTokenizer. */
export function rougeTokenize(text: string, stem = false): string[] {
  const spaced = text.toLowerCase().replace(/[^a-z0-9]+/gu, ' ');
  const tokens = spaced.split(/\s+/u);
  const out: string[] = [];
  for (const t of tokens) {
    const tok = stem && t.length > 3 ? porterStem(t) : t;
    if (/^[a-z0-9]+$/u.test(tok)) out.push(tok);
  }
  return out;
}

/** scoring.fmeasure. */
function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(' ');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** rouge_scorer._score_ngrams. */
function scoreNgrams(target: readonly string[], prediction: readonly string[], n: number): RougeScore {
  const t = ngramCounts(target, n);
  const p = ngramCounts(prediction, n);
  let overlap = 0;
  for (const [k, c] of t) overlap += Math.min(c, p.get(k) ?? 0);
  let tTotal = 0;
  for (const c of t.values()) tTotal += c;
  let pTotal = 0;
  for (const c of p.values()) pTotal += c;
  const precision = overlap / Math.max(pTotal, 1);
  const recall = overlap / Math.max(tTotal, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Length of the longest common subsequence (two rows, since rougeL needs no backtracking). */
function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  let cur = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** rouge_scorer._score_lcs. */
function scoreLcs(target: readonly string[], prediction: readonly string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsLength(target, prediction);
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** rouge_scorer.lcs_ind: indices into `ref` of one LCS, read back the way upstream does. */
function lcsIndices(ref: readonly string[], can: readonly string[]): number[] {
  const table: number[][] = [];
  for (let i = 0; i <= ref.length; i++) table.push(new Array<number>(can.length + 1).fill(0));
  for (let i = 1; i <= ref.length; i++) {
    for (let j = 1; j <= can.length; j++) {
      table[i]![j] = ref[i - 1] === can[j - 1] ? table[i - 1]![j - 1]! + 1 : Math.max(table[i - 1]![j]!, table[i]![j - 1]!);
    }
  }
  const out: number[] = [];
  let i = ref.length;
  let j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      out.unshift(i - 1);
      i--;
      j--;
    } else if (table[i]![j - 1]! > table[i - 1]![j]!) {
      j--;
    } else {
      i--;
    }
  }
  return out;
}

function countTokens(sents: readonly (readonly string[])[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of sents) for (const t of s) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

/** rouge_scorer._summary_level_lcs: union LCS per reference sentence, without double counting. */
function scoreSummaryLcs(refSents: readonly (readonly string[])[], canSents: readonly (readonly string[])[]): RougeScore {
  const zero = { precision: 0, recall: 0, fmeasure: 0 };
  if (refSents.length === 0 || canSents.length === 0) return zero;
  const m = refSents.reduce((a, s) => a + s.length, 0);
  const n = canSents.reduce((a, s) => a + s.length, 0);
  if (m === 0 || n === 0) return zero;
  const refCounts = countTokens(refSents);
  const canCounts = countTokens(canSents);
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const idx of lcsIndices(r, c)) union.add(idx);
    for (const idx of [...union].sort((a, b) => a - b)) {
      const t = r[idx]!;
      if ((canCounts.get(t) ?? 0) > 0 && (refCounts.get(t) ?? 0) > 0) {
        hits++;
        canCounts.set(t, canCounts.get(t)! - 1);
        refCounts.set(t, refCounts.get(t)! - 1);
      }
    }
  }
  const recall = hits / m;
  const precision = hits / n;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

function checkTypes(types: readonly RougeType[]): void {
  if (types.length === 0) throw new DifformerError('DIFFORMER_BAD_OPTION', 'no ROUGE type requested; choose from rouge1, rouge2, rougeL, rougeLsum');
  for (const t of types) {
    if (!ALL_TYPES.includes(t)) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', `unknown ROUGE type '${String(t)}'; choose from ${ALL_TYPES.join(', ')}`);
    }
  }
}

/** Newline-separated sentences, empty ones dropped, each tokenized (rougeLsum input). */
function sentences(text: string, stem: boolean): string[][] {
  return text
    .split('\n')
    .filter((s) => s.length > 0)
    .map((s) => rougeTokenize(s, stem));
}

/** ROUGE of one hypothesis against one reference, like `RougeScorer(types).score(ref, hyp)`. */
export function rougePair<T extends RougeType = DefaultRougeType>(hyp: string, ref: string, opts: RougeOptions<T> = {}): Record<T, RougeScore> {
  const types: readonly RougeType[] = opts.types ?? DEFAULT_TYPES;
  checkTypes(types);
  const stem = opts.stemmer ?? false;
  const target = rougeTokenize(ref, stem);
  const prediction = rougeTokenize(hyp, stem);
  const out: Partial<Record<RougeType, RougeScore>> = {};
  for (const t of types) {
    if (t === 'rouge1') out[t] = scoreNgrams(target, prediction, 1);
    else if (t === 'rouge2') out[t] = scoreNgrams(target, prediction, 2);
    else if (t === 'rougeL') out[t] = scoreLcs(target, prediction);
    else out[t] = scoreSummaryLcs(sentences(ref, stem), sentences(hyp, stem));
  }
  return out as Record<T, RougeScore>;
}

/** Corpus ROUGE: the mean over lines of rougePair(sys[i], ref[i]). */
export function rougeScores<T extends RougeType = DefaultRougeType>(sys: readonly string[], ref: readonly string[], opts: RougeOptions<T> = {}): Record<T, RougeScore> {
  if (sys.length !== ref.length) {
    throw new DifformerError(LINE_MISMATCH_CODE, `system output has ${sys.length} lines but the reference has ${ref.length}; they must pair up line by line`);
  }
  if (sys.length === 0) throw new DifformerError(EMPTY_CODE, 'cannot compute ROUGE of an empty corpus (0 lines)');
  const types: readonly RougeType[] = opts.types ?? DEFAULT_TYPES;
  checkTypes(types);
  const sums: Partial<Record<RougeType, RougeScore>> = {};
  for (const t of types) sums[t] = { precision: 0, recall: 0, fmeasure: 0 };
  for (let i = 0; i < sys.length; i++) {
    const pair: Partial<Record<RougeType, RougeScore>> = rougePair<RougeType>(sys[i]!, ref[i]!, { stemmer: opts.stemmer ?? false, types });
    for (const t of types) {
      const s = sums[t]!;
      const p = pair[t]!;
      s.precision += p.precision;
      s.recall += p.recall;
      s.fmeasure += p.fmeasure;
    }
  }
  for (const t of types) {
    const s = sums[t]!;
    s.precision /= sys.length;
    s.recall /= sys.length;
    s.fmeasure /= sys.length;
  }
  return sums as Record<T, RougeScore>;
}

const LABELS: Record<RougeType, string> = { rouge1: 'ROUGE-1', rouge2: 'ROUGE-2', rougeL: 'ROUGE-L', rougeLsum: 'ROUGE-Lsum' };

/**
 * One line per type, in the order rouge1, rouge2, rougeL, rougeLsum, values x100 with 2
 * decimals: `ROUGE-1 P/R/F = 45.12/40.03/41.20`.
 */
export function formatRouge(result: Partial<Record<RougeType, RougeScore>>): string[] {
  const lines: string[] = [];
  for (const t of ALL_TYPES) {
    const s = result[t];
    if (s === undefined) continue;
    const f = (x: number): string => pyFixed(x * 100, 2);
    lines.push(`${LABELS[t]} P/R/F = ${f(s.precision)}/${f(s.recall)}/${f(s.fmeasure)}`);
  }
  return lines;
}
