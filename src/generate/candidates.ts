/**
 * The candidates of the non-autoregressive generators (diffusion's b1·b2, mask-predict's length
 * beam): their lengths around the predicted one, choosing one per sentence (official
 * `difformer/generator.py`; reference-brief 1.5), and turning a raw argmax row into a
 * fairseq-style hypothesis.
 *
 *   model     the candidate's own mean log-prob (positions < its length)
 *   bleu-mbr  mean over the other non-empty candidates of sacreBLEU sentence_bleu(other, [this]),
 *             divided by b - 1 (empty candidates keep their model score): self-agreement MBR
 *   ar-rerank mean log-prob under an autoregressive model with teacher forcing (fairseq's
 *             IterativeRefinementGenerator.rerank; the official `--ppl-mbr`), via `ArScorer`
 *
 * As the official generator, a selection mode only applies when b > 1, and the chosen score
 * replaces the hypothesis score (so H- lines print a BLEU under bleu-mbr).
 */
import * as tf from '@tensorflow/tfjs';
import { sliceBatch, type Batch } from '../data/language_pair_dataset.js';
import { sacreSentenceBleu } from '../metrics/sacrebleu.js';
import type { Hypothesis } from './sequence_generator.js';

export type CandidateSelection = 'model' | 'bleu-mbr' | 'ar-rerank';
export const CANDIDATE_SELECTIONS: readonly CandidateSelection[] = ['model', 'bleu-mbr', 'ar-rerank'];

/**
 * An autoregressive model that scores candidates (the lead wires the AR Transformer in).
 * `srcTokens` [N, S] int32: each candidate's source row, as in the batch (BOS first).
 * `prevTokens` [N, L] int32: [EOS, c_1 .. c_{n-1}, pad ...], the candidate's raw argmax row
 * (positions < its length) with position 0 overwritten by EOS, right-padded.
 * Returns, per row, the mean over j >= 1 with prevTokens[j] != pad of
 * log p(prevTokens[j] | prevTokens[< j], src): decoder output j - 1 scores token j.
 */
export interface ArScorer {
  scoreCandidates(srcTokens: tf.Tensor2D, prevTokens: tf.Tensor2D): Float32Array;
}

/**
 * Candidate lengths, sentence-major, then length offset, then noise draw:
 * max(max(L*_i, 2) + l - floor(b1/2), 2), capped at maxLen.
 */
export function candidateLengths(predicted: ArrayLike<number>, b1: number, b2: number, maxLen = Infinity): Int32Array {
  const out = new Int32Array(predicted.length * b1 * b2);
  let k = 0;
  for (let i = 0; i < predicted.length; i++) {
    const base = Math.max(predicted[i]!, 2);
    for (let l = 0; l < b1; l++) {
      const len = Math.min(Math.max(base + l - Math.floor(b1 / 2), 2), maxLen);
      for (let n = 0; n < b2; n++) out[k++] = len;
    }
  }
  return out;
}

/** Index of the highest score (the first on ties). */
export function bestIndex(scores: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/** The argmax row of one candidate at positions < its length, with its log-probs. */
export interface RawCandidate {
  tokens: Int32Array;
  scores: Float32Array;
  /** Mean of `scores` (natural log): the official hypothesis score. */
  score: number;
  /** The 0-based decoding step at which the candidate was final (--print-step). */
  steps?: number;
}

export interface SpecialTokens {
  bos: number;
  pad: number;
  eos: number;
}

/**
 * Hypothesis tokens from a raw row: a leading BOS is dropped (translation_lev targets start with
 * it), trailing pads are dropped, and EOS is appended (positional score 0, it was not
 * predicted) unless the row already ends with it, so hypotheses end with EOS like the AR
 * generator's. Tokens inside the row are kept as predicted (nothing is excluded from the argmax).
 */
export function toHypothesisTokens(raw: RawCandidate, ids: SpecialTokens): { tokens: Int32Array; positionalScores: Float32Array } {
  let start = 0;
  let end = raw.tokens.length;
  if (end > 0 && raw.tokens[0] === ids.bos) start = 1;
  while (end > start && raw.tokens[end - 1] === ids.pad) end--;
  const ends = end > start && raw.tokens[end - 1] === ids.eos;
  const n = end - start + (ends ? 0 : 1);
  const tokens = new Int32Array(n);
  const positionalScores = new Float32Array(n);
  tokens.set(raw.tokens.subarray(start, end));
  positionalScores.set(raw.scores.subarray(start, end));
  if (!ends) tokens[n - 1] = ids.eos;
  return { tokens, positionalScores };
}

/** BLEU-MBR scores of one sentence's candidates (official bleu_rerank). */
export function bleuMbrScores(strings: readonly string[], modelScores: readonly number[]): number[] {
  const b = strings.length;
  return strings.map((si, i) => {
    if (!si) return modelScores[i]!;
    let sum = 0;
    for (let j = 0; j < b; j++) if (j !== i && strings[j]) sum += sacreSentenceBleu(strings[j]!, [si]).score;
    return sum / (b - 1);
  });
}

/** Candidate indices of one sentence, best first: by score, ties by position (argmax's first). */
export function rankCandidates(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/** Build the sentence's hypotheses, best first, each scored by its selection score. */
export function rankedHypotheses(raws: readonly RawCandidate[], selScores: readonly number[], ids: SpecialTokens): Hypothesis[] {
  return rankCandidates(selScores).map((c) => ({ ...toHypothesisTokens(raws[c]!, ids), score: selScores[c]!, ...(raws[c]!.steps === undefined ? {} : { steps: raws[c]!.steps }) }));
}

/**
 * Every sentence's hypotheses, best first. Candidates are sentence-major, `perSentence` of each
 * sentence in a row (the layout both NAT generators decode in).
 */
export function hypothesesBySentence(raws: readonly RawCandidate[], selScores: readonly number[], perSentence: number, ids: SpecialTokens): Hypothesis[][] {
  const out: Hypothesis[][] = [];
  for (let lo = 0; lo < raws.length; lo += perSentence) {
    out.push(rankedHypotheses(raws.slice(lo, lo + perSentence), selScores.slice(lo, lo + perSentence), ids));
  }
  return out;
}

/**
 * `reranker`'s score of each sentence-major candidate; candidate c is scored against the source
 * row of its sentence, floor(c / perSentence), as fairseq's rerank repeats the source.
 */
export function arRerankScores(reranker: ArScorer, raws: readonly RawCandidate[], batch: Batch, perSentence: number, ids: SpecialTokens): number[] {
  const { rows, width } = arRerankRows(raws, ids);
  const srcRows = new Int32Array(raws.length * batch.srcLen);
  for (let c = 0; c < raws.length; c++) {
    const s = Math.floor(c / perSentence);
    srcRows.set(batch.srcTokens.subarray(s * batch.srcLen, (s + 1) * batch.srcLen), c * batch.srcLen);
  }
  const srcT = tf.tensor2d(srcRows, [raws.length, batch.srcLen], 'int32');
  const prevT = tf.tensor2d(rows, [raws.length, width], 'int32');
  try {
    return Array.from(reranker.scoreCandidates(srcT, prevT));
  } finally {
    tf.dispose([srcT, prevT]);
  }
}

/** Rows [N, maxLen] for `ArScorer`: EOS at position 0, raw tokens 1..n-1, pad after. */
export function arRerankRows(raws: readonly RawCandidate[], ids: SpecialTokens): { rows: Int32Array; width: number } {
  const width = Math.max(1, ...raws.map((r) => r.tokens.length));
  const rows = new Int32Array(raws.length * width).fill(ids.pad);
  raws.forEach((r, i) => {
    rows.set(r.tokens, i * width);
    rows[i * width] = ids.eos;
  });
  return { rows, width };
}

/**
 * Runs `decode` on blocks of whole sentences so that one pass holds at most `maxPositions`
 * candidate positions (`perSentence` each, an estimate), concatenating the results in batch
 * order. NAT generators multiply the batch by their candidates per sentence, and one pass keeps
 * activations (and [N, L, V] logits) for all of them: large --batch-size values would otherwise
 * exhaust the 4 GB wasm heap.
 */
export function decodeInSentenceBlocks<H>(
  batch: Batch,
  perSentence: number,
  maxPositions: number,
  decode: (b: Batch) => { hypos: H[]; history: Int32Array[][] | undefined },
): { hypos: H[]; history: Int32Array[][] | undefined } {
  const sentences = Math.max(1, Math.floor(maxPositions / Math.max(1, perSentence)));
  if (batch.bsz <= sentences) return decode(batch);
  const hypos: H[] = [];
  let history: Int32Array[][] | undefined;
  for (let start = 0; start < batch.bsz; start += sentences) {
    const r = decode(sliceBatch(batch, start, Math.min(batch.bsz, start + sentences)));
    hypos.push(...r.hypos);
    if (r.history !== undefined) (history ??= []).push(...r.history);
  }
  return { hypos, history };
}
