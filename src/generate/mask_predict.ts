/**
 * Mask-Predict decoding for CMLM as fairseq v0.10.2 runs it (IterativeRefinementGenerator with
 * CMLMNATransformerModel.forward_decoder, `_skeptical_unmasking`, NATransformerModel's
 * initialize_output_tokens / regenerate_length_beam; reference-brief 3.2):
 *
 *   L*  = predicted length (incl. BOS/EOS); candidates max(max(L*, 2) + l - floor(N/2), 2),
 *         l = 0..N-1 (N = --iter-decode-with-beam), all candidates of all sentences in one batch
 *   row = [BOS, <unk> x (L-2), EOS], scores 0
 *   for step = 0..M (M = --iter-decode-max-iter; M+1 decoder passes, max_step = M+1):
 *     every <unk> position takes its argmax token and that log-prob; other positions keep theirs
 *     if step + 1 < max_step: re-mask the n lowest-scoring tokens, scores reset to 0, with
 *       n = floor(L' * (1 - (step+1)/max_step)), L' = non-pad tokens of the row - 2
 *     adaptive (default): a row whose tokens equal those after the previous step is finished
 *   hypothesis score = mean positional score over the row's non-pad tokens (BOS/EOS count, 0)
 *   length beam: best candidate by that score, or by an external autoregressive reranker
 *
 * Per-candidate bookkeeping (tokens, scores, re-masking, the adaptive check) is on typed arrays;
 * each pass runs the decoder once over all unfinished candidates, and finished ones leave the
 * batch, as fairseq does. Decoding is deterministic (argmax), so the seed is not used.
 *
 * Faithful quirks, kept on purpose: the adaptive check compares the rows AFTER re-masking, so a
 * candidate that stops early (short rows, where n repeats) keeps its <unk> tokens in the output;
 * pass --iter-decode-force-max-iter for real Mask-Predict. Argmax excludes nothing (BOS, EOS,
 * pad or <unk> can be predicted; a predicted <unk> is predicted again next pass). The final
 * line's beam is --beam, as fairseq-generate prints it (not --iter-decode-with-beam).
 *
 * Divergences: BOS, EOS and pads are never re-masking candidates and ties are broken by position
 * (fairseq sorts all positions and relies on BOS/EOS scores of 0 being the maximum, which a real
 * token scoring exactly 0 could tie); n is computed in float32 as torch does. Lengths are also
 * capped at the model's --max-target-positions. --iter-decode-eos-penalty is accepted and
 * ignored (it only affects the Levenshtein Transformer). Left out: --decoding-format, ensembles,
 * --retain-dropout.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import type { Dictionary } from '../data/dictionary.js';
import { DifformerError } from '../errors.js';
import { boolFlag, floatFlag, intFlag, type OptionTable } from '../options.js';
import { arRerankScores, bestIndex, candidateLengths, decodeInSentenceBlocks, hypothesesBySentence, toHypothesisTokens, type ArScorer, type RawCandidate } from './candidates.js';
import type { GenerationWithHistory, SequenceGenerator } from './generator.js';

export interface MaskPredictGenerationOptions {
  /** M: M + 1 decoder passes at most. */
  iterDecodeMaxIter: number;
  /** Length beam: candidate lengths around the predicted one. */
  iterDecodeWithBeam: number;
  /** Always run M + 1 passes (no adaptive stop): real Mask-Predict. */
  iterDecodeForceMaxIter: boolean;
  /** Pick among the length candidates with an AR model (the last model of --path). */
  iterDecodeWithExternalReranker: boolean;
  /** Accepted for fairseq compatibility; only the Levenshtein Transformer uses it. */
  iterDecodeEosPenalty: number;
  /** Keep every intermediate row (fairseq's E- lines). */
  retainIterHistory: boolean;
}

export const maskPredictGenerationDefaults: Readonly<MaskPredictGenerationOptions> = Object.freeze({
  iterDecodeMaxIter: 10,
  iterDecodeWithBeam: 1,
  iterDecodeForceMaxIter: false,
  iterDecodeWithExternalReranker: false,
  iterDecodeEosPenalty: 0,
  retainIterHistory: false,
});

export const maskPredictGenerationOptionTable: OptionTable<MaskPredictGenerationOptions> = {
  iterDecodeMaxIter: intFlag('--iter-decode-max-iter', 'M: refinement iterations (M+1 decoder passes)', 'M', 0),
  iterDecodeWithBeam: intFlag('--iter-decode-with-beam', 'length beam: candidate lengths around the predicted length', 'N', 1),
  iterDecodeForceMaxIter: boolFlag('--iter-decode-force-max-iter', 'run all M+1 passes (no adaptive stop): real Mask-Predict'),
  iterDecodeWithExternalReranker: boolFlag('--iter-decode-with-external-reranker', 'rerank length candidates with the last model of --path (autoregressive)'),
  iterDecodeEosPenalty: floatFlag('--iter-decode-eos-penalty', 'accepted for fairseq compatibility; used only by the Levenshtein Transformer'),
  // Same flag and kind as the diffusion sampler's, so the CLI declares it once.
  retainIterHistory: boolFlag('--retain-iter-history', 'keep the argmax tokens of every decoding step'),
};

/** What mask-predict needs of a model (models/cmlm.ts's CmlmModel implements it). */
export interface MaskPredictModel<E = unknown> {
  readonly generatorFamily: 'mask-predict';
  readonly maxTargetPositions: number;
  encode(srcTokens: tf.Tensor2D, training: boolean): E;
  /** Predicted target lengths per sentence (incl. BOS/EOS), unclamped. */
  predictLengths(encOut: E): Int32Array;
  reorderEncoderOut(encOut: E, indices: tf.Tensor1D): E;
  disposeEncoderOut(encOut: E): void;
  /** One decoder pass: tokens [B, T] (<unk> = masked) -> log-probabilities [B, T, V]. */
  decodeLogProbs(encOut: E, tokens: tf.Tensor2D): tf.Tensor3D;
}

export interface MaskPredictGeneratorDeps {
  tgtDict: Dictionary;
  options: MaskPredictGenerationOptions;
  /** Unused (decoding is deterministic); kept for a uniform builder signature. */
  seed: number;
  /** Needed for --iter-decode-with-external-reranker. */
  reranker?: ArScorer;
  /** The --beam value, which fairseq-generate prints in its final line (default: the length beam). */
  beamLabel?: number;
}

/** History rows: the chosen candidate's initial row, then its row after each prediction and re-masking. */
export interface MaskPredictGenerator extends SequenceGenerator {
  generateWithHistory(batch: Batch): GenerationWithHistory;
}

function checkOptions(o: MaskPredictGenerationOptions, reranker: ArScorer | undefined): void {
  const bad = (msg: string): never => {
    throw new DifformerError('DIFFORMER_BAD_OPTION', msg);
  };
  if (!Number.isInteger(o.iterDecodeMaxIter) || o.iterDecodeMaxIter < 0) bad(`--iter-decode-max-iter must be an integer >= 0, got ${o.iterDecodeMaxIter}`);
  if (!Number.isInteger(o.iterDecodeWithBeam) || o.iterDecodeWithBeam < 1) bad(`--iter-decode-with-beam must be a positive integer, got ${o.iterDecodeWithBeam}`);
  if (o.iterDecodeWithExternalReranker) {
    if (reranker === undefined) bad('--iter-decode-with-external-reranker needs an autoregressive model with the same dictionary as the last model of --path: --path cmlm.pt:transformer.pt');
    if (o.iterDecodeWithBeam < 2) bad('--iter-decode-with-external-reranker needs several candidates per sentence: pass --iter-decode-with-beam N with N > 1');
  }
}

/**
 * _skeptical_unmasking's count: n = floor((nonPad - 2) * (1 - (step + 1) / maxStep)), the
 * product in float32 as torch computes it (the scalar cast to float32, then truncated).
 */
export function remaskCount(nonPad: number, step: number, maxStep: number): number {
  const p = Math.fround(1 - (step + 1) / maxStep);
  return Math.max(0, Math.trunc(Math.fround(Math.fround(nonPad - 2) * p)));
}

/** Logit elements one mask-predict pass may hold (256 MB). */
const MAX_LOGIT_ELEMENTS = 64 * 2 ** 20;

/** Builds the generator; beamLabel = --beam when given (fairseq prints it), else the length beam. */
export function buildMaskPredictGenerator<E>(model: MaskPredictModel<E>, deps: MaskPredictGeneratorDeps): MaskPredictGenerator {
  const o = deps.options;
  checkOptions(o, deps.reranker);
  const beam = o.iterDecodeWithBeam;
  const maxStep = o.iterDecodeMaxIter + 1;
  const { bosIndex: bos, padIndex: pad, eosIndex: eos, unkIndex: unk } = deps.tgtDict;
  const ids = { bos, pad, eos };

  function generateWithHistory(batch: Batch): GenerationWithHistory {
    const bsz = batch.bsz;
    const n = bsz * beam;
    const src = tf.tensor2d(batch.srcTokens, [bsz, batch.srcLen], 'int32');
    const first = model.encode(src, false);
    const lengths = candidateLengths(model.predictLengths(first), beam, 1, model.maxTargetPositions);
    const order = tf.tensor1d(Int32Array.from({ length: n }, (_, c) => Math.floor(c / beam)), 'int32'); // [N] sentence of each candidate
    let enc = model.reorderEncoderOut(first, order);
    model.disposeEncoderOut(first);
    tf.dispose([order, src]);

    // Candidate rows [N, W]: BOS, <unk> x (L-2), EOS, pad.
    const W = Math.max(...lengths);
    const tokens = new Int32Array(n * W).fill(pad);
    const scores = new Float32Array(n * W);
    lengths.forEach((len, c) => {
      tokens.fill(unk, c * W, c * W + len);
      tokens[c * W] = bos;
      tokens[c * W + len - 1] = eos;
    });
    const row = (c: number): Int32Array => tokens.slice(c * W, (c + 1) * W);
    const history: Int32Array[][] = Array.from({ length: n }, () => []);
    const record = (c: number): void => {
      if (o.retainIterHistory) history[c]!.push(row(c).filter((t) => t !== pad));
    };
    for (let c = 0; c < n; c++) record(c);

    let active = Int32Array.from({ length: n }, (_, c) => c);
    let prevRows = Int32Array.from(tokens); // the rows after the previous pass (adaptive stop)
    const raws: RawCandidate[] = new Array<RawCandidate>(n);
    for (let step = 0; step < maxStep && active.length > 0; step++) {
      // 1. One decoder pass over the unfinished candidates (trailing pad columns trimmed).
      const a = active.length;
      const w = Math.max(...Array.from(active, (c) => lengths[c]!));
      const input = new Int32Array(a * w);
      active.forEach((c, i) => input.set(tokens.subarray(c * W, c * W + w), i * w));
      const [tokT, scT] = tf.tidy(() => {
        const lp = model.decodeLogProbs(enc, tf.tensor2d(input, [a, w], 'int32')); // [A, w, V]
        return [tf.argMax(lp, 2), tf.max(lp, 2)];
      });
      const predTok = tokT!.dataSync() as Int32Array;
      const predSc = scT!.dataSync() as Float32Array;
      tf.dispose([tokT!, scT!]);

      // 2. Masked positions take the prediction; 3. re-mask the least confident (not on the last pass).
      const finished: boolean[] = [];
      active.forEach((c, i) => {
        for (let j = 0; j < w; j++) {
          if (tokens[c * W + j] === unk) {
            tokens[c * W + j] = predTok[i * w + j]!;
            scores[c * W + j] = predSc[i * w + j]!;
          }
        }
        record(c);
        if (step + 1 < maxStep) {
          remask(c, step);
          record(c);
        }
        const same = !o.iterDecodeForceMaxIter && tokens.subarray(c * W, (c + 1) * W).every((t, j) => t === prevRows[c * W + j]);
        finished.push(same || step + 1 === maxStep);
      });

      // 4. Finished candidates leave the batch.
      active.forEach((c, i) => {
        if (finished[i]) raws[c] = { ...rawCandidate(c), steps: step };
      });
      const keep = Int32Array.from(active.keys()).filter((i) => !finished[i]);
      if (keep.length > 0 && keep.length < a) {
        const idx = tf.tensor1d(keep, 'int32');
        const next = model.reorderEncoderOut(enc, idx);
        model.disposeEncoderOut(enc);
        idx.dispose();
        enc = next;
      }
      active = Int32Array.from(keep, (i) => active[i]!);
      prevRows = Int32Array.from(tokens);
    }
    model.disposeEncoderOut(enc);

    /** _skeptical_unmasking on candidate c: the n lowest-scoring interior tokens become <unk>. */
    function remask(c: number, step: number): void {
      const len = lengths[c]!;
      let nonPad = 0;
      for (let j = 0; j < len; j++) if (tokens[c * W + j] !== pad) nonPad++;
      const k = remaskCount(nonPad, step, maxStep);
      if (k === 0) return;
      const interior = Array.from({ length: len - 2 }, (_, j) => j + 1);
      interior.sort((x, y) => scores[c * W + x]! - scores[c * W + y]! || x - y);
      for (const j of interior.slice(0, k)) {
        tokens[c * W + j] = unk;
        scores[c * W + j] = 0;
      }
    }

    function rawCandidate(c: number): RawCandidate {
      const keepPos = Array.from({ length: lengths[c]! }, (_, j) => j).filter((j) => tokens[c * W + j] !== pad);
      const sc = Float32Array.from(keepPos, (j) => scores[c * W + j]!);
      return { tokens: Int32Array.from(keepPos, (j) => tokens[c * W + j]!), scores: sc, score: sc.reduce((s, v) => s + v, 0) / Math.max(1, sc.length) };
    }

    // Own mean score, or the AR reranker's (fairseq's rerank) when asked and beam > 1.
    const sel = o.iterDecodeWithExternalReranker && beam > 1 ? arRerankScores(deps.reranker!, raws, batch, beam, ids) : raws.map((r) => r.score);
    const hypos = hypothesesBySentence(raws, sel, beam, ids);
    if (!o.retainIterHistory) return { hypos, history: undefined };
    const chosen: Int32Array[][] = [];
    for (let i = 0; i < bsz; i++) {
      const s = sel.slice(i * beam, (i + 1) * beam);
      const best = i * beam + bestIndex(s);
      chosen.push(history[best]!.map((r) => toHypothesisTokens({ tokens: r, scores: new Float32Array(r.length), score: 0 }, ids).tokens));
    }
    return { hypos, history: chosen };
  }

  /** Sentence blocks whose [N, W, V] logits stay under ~64M elements (no noise: same output as one pass). */
  function generateInBlocks(batch: Batch): GenerationWithHistory {
    const perSentence = beam * (batch.srcLen + beam + 8) * deps.tgtDict.size;
    return decodeInSentenceBlocks(batch, perSentence, MAX_LOGIT_ELEMENTS, generateWithHistory);
  }

  return {
    beamLabel: deps.beamLabel ?? beam,
    generate: (batch) => generateInBlocks(batch).hypos,
    generateWithHistory: generateInBlocks,
  };
}
