/**
 * 2D parallel decoding for embedding-diffusion models (Difformer's official
 * `difformer/generator.py` and `Difformer.initialize_z_t / regenerate_beam / forward_decoder`;
 * reference-brief 1.5):
 *
 *   L*  = max(argmax length class mapped back, 2)
 *   candidates (sentence-major, then length, then noise): lengths max(L* + l - floor(b1/2), 2),
 *       l = 0..b1-1, each repeated b2 times; all b1·b2 candidates of all sentences in ONE batch
 *   z_K ~ N(0, F_dec^2 I); prev = 0
 *   for k = K-1 .. E:  z0hat = f(z_k, tau_k, prev)   (clamping: s·E[argmax z0hat·Eᵀ], or with
 *                      --clamping-mode l2 the nearest s·E row, as Diffusion-LM)
 *                      z_{k-1} = c1_k z0hat + c2_k z_k + F_dec sqrt(var_k) eps   (ancestral DDPM on
 *                      the respaced chain; log-variance clipped at k = 0); prev = z0hat
 *   tokens, scores = argmax / max of log_softmax(prev·Eᵀ) at positions < length
 *
 * With early stopping E the loop makes K - E network calls and returns the z0hat of the last
 * visited step (the z_{E-1} sample it would draw is discarded, so it is not drawn here).
 * z_K and every eps come from an Rng seeded with `deps.seed` (one stream per generator, so the
 * same seed and batches give the same output). Candidate selection and the hypothesis format
 * are in ./candidates.ts.
 *
 * Divergences from the official code: lengths are also clamped to the model's
 * --max-target-positions (the official code has no upper clamp and would fail on the position
 * table); `--decoding-vp-rf` and `--retain-z-0-hat` are left out (history always records the
 * argmax of each step's z0hat).
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import type { Dictionary } from '../data/dictionary.js';
import { posteriorSample } from '../diffusion/process.js';
import { modelTimestep, namedDiffusion, respace, SCHEDULE_NAMES, spaceTimesteps, type Diffusion, type ScheduleName } from '../diffusion/schedule.js';
import { DifformerError } from '../errors.js';
import { Rng } from '../nn/params.js';
import { boolFlag, choiceFlag, floatFlag, intFlag, type OptionTable } from '../options.js';
import {
  arRerankScores,
  bestIndex,
  bleuMbrScores,
  candidateLengths,
  CANDIDATE_SELECTIONS,
  decodeInSentenceBlocks,
  hypothesesBySentence,
  toHypothesisTokens,
  type ArScorer,
  type CandidateSelection,
  type RawCandidate,
} from './candidates.js';
import { postProcess } from '../data/post_process.js';
import type { GenerationWithHistory, SequenceGenerator } from './generator.js';

export type { ArScorer, CandidateSelection };

// ---- clamping modes (--clamping-mode) ---------------------------------------------------------

export const CLAMPING_MODES = ['argmax', 'l2'] as const;
export type ClampingMode = (typeof CLAMPING_MODES)[number];

/** Elements of one block of logits when decoding many candidates (16M floats = 64 MB). */
const LOGIT_BLOCK_ELEMENTS = 16 * 2 ** 20;

/**
 * Diffusion-LM's `denoised_fn_round`: per position, the row of `table` nearest to z in L2.
 * Batched as argmin_v ||E_v||² - 2 z·E_vᵀ (||z||² is the same for every v). Unlike the argmax of
 * z·Eᵀ this does not favour rows with large norms. z [B, L, D], table [V, D] -> rows [B, L, D].
 */
export function nearestEmbeddingClamp(z: tf.Tensor3D, table: tf.Tensor2D): { tokens: tf.Tensor2D; clamped: tf.Tensor3D } {
  return tf.tidy(() => {
    const [b, l, d] = z.shape;
    const flat = tf.reshape(z, [b * l, d]) as tf.Tensor2D; // [N, D]
    const sqNorms = tf.sum(tf.square(table), 1); // [V]
    const dist = tf.sub(sqNorms, tf.mul(tf.matMul(flat, table, false, true), 2)); // [N, V], minus ||z||²
    const tokens = tf.argMin(dist, 1); // [N]
    const clamped = tf.reshape(tf.gather(table, tokens), [b, l, d]) as tf.Tensor3D;
    return { tokens: tf.reshape(tokens, [b, l]) as tf.Tensor2D, clamped };
  });
}

export interface DiffusionGenerationOptions {
  /** K: respaced decoding steps. */
  decodingSteps: number;
  /** E: stop after step E (K - E network calls). */
  decodingEarlyStopping: number;
  /** F_dec: scales the prior and the posterior noise (official default 1). */
  decodingRescalingFactor: number;
  /** Decoding schedule; undefined = the training schedule. */
  decodingNoiseSchedule: ScheduleName | undefined;
  /** Replace z0hat by s·E[argmax] each step. */
  clamping: boolean;
  /** How --clamping picks the token: Difformer's argmax of z0hat·Eᵀ, or Diffusion-LM's nearest embedding (L2). */
  clampingMode: ClampingMode;
  /** b1: length candidates around the predicted length. */
  lengthBeamSize: number;
  /** b2: noise draws per length. */
  noiseBeamSize: number;
  candidateSelection: CandidateSelection;
  /** Keep each step's argmax tokens (fairseq's E- lines). */
  retainIterHistory: boolean;
  /** Feed the constant time D·T at every step (experiments only), D in [0, 1). */
  decodingFixedT: number | undefined;
}

export const diffusionGenerationDefaults: Readonly<DiffusionGenerationOptions> = Object.freeze({
  decodingSteps: 20,
  decodingEarlyStopping: 0,
  decodingRescalingFactor: 1,
  decodingNoiseSchedule: undefined,
  clamping: false,
  clampingMode: 'argmax',
  lengthBeamSize: 1,
  noiseBeamSize: 1,
  candidateSelection: 'model',
  retainIterHistory: false,
  decodingFixedT: undefined,
});

export const diffusionGenerationOptionTable: OptionTable<DiffusionGenerationOptions> = {
  decodingSteps: intFlag('--decoding-steps', 'K: diffusion steps at inference (respaced from T)', 'K'),
  decodingEarlyStopping: intFlag('--decoding-early-stopping', 'E: stop after step E, output that step\'s z0 prediction (K-E network calls)', 'E'),
  decodingRescalingFactor: floatFlag('--decoding-rescaling-factor', 'noise factor at inference (prior and posterior noise)', 'F'),
  decodingNoiseSchedule: choiceFlag('--decoding-noise-schedule', 'noise schedule at inference (default: the training one)', SCHEDULE_NAMES),
  clamping: boolFlag('--clamping', 'clamping trick: replace z0hat by the embedding of its argmax token each step'),
  clampingMode: choiceFlag('--clamping-mode', "with --clamping: 'argmax' of z0hat·Eᵀ (Difformer) or 'l2' nearest embedding (Diffusion-LM)", CLAMPING_MODES),
  lengthBeamSize: intFlag('--length-beam-size', 'b1: candidate lengths around the predicted length', 'B1'),
  noiseBeamSize: intFlag('--noise-beam-size', 'b2: noise samples per candidate length', 'B2'),
  candidateSelection: choiceFlag('--candidate-selection', 'pick among b1*b2 candidates by own score, BLEU-MBR, or an AR model (needs --path diff.pt:ar.pt)', CANDIDATE_SELECTIONS),
  retainIterHistory: boolFlag('--retain-iter-history', 'keep the argmax tokens of every decoding step'),
  decodingFixedT: floatFlag('--decoding-fixed-t', 'feed the constant time D*T at every step (experiments)', 'D'),
};

/** What the sampler needs of a model (models/difformer.ts's DifformerModel implements it). */
export interface DiffusionModel<E = unknown> {
  readonly generatorFamily: 'diffusion';
  readonly opts: {
    readonly diffusionSteps: number;
    readonly noiseSchedule: ScheduleName;
    readonly rescaleTimesteps: boolean;
    readonly latentDim: number;
    readonly maxTargetPositions: number;
  };
  encode(srcTokens: tf.Tensor2D, training: boolean): E;
  /** Predicted target lengths per sentence (incl. BOS/EOS), unclamped. */
  predictLengths(encOut: E): Int32Array;
  reorderEncoderOut(encOut: E, indices: tf.Tensor1D): E;
  disposeEncoderOut(encOut: E): void;
  /** z0hat [B, L, D] from z_t [B, L, D] at network time tModel; mask [B, L] 1 = real position. */
  denoise(zt: tf.Tensor3D, tModel: Float32Array | number, mask: tf.Tensor2D, encOut: E, prev: tf.Tensor3D | null, training: boolean): tf.Tensor3D;
  /** z [B, L, D] -> logits [B, L, V]. */
  logits(z: tf.Tensor3D): tf.Tensor3D;
  /** s·E[tokens] [B, L] -> [B, L, D] (used by clamping). */
  embedTarget(tokens: tf.Tensor2D): tf.Tensor3D;
  /** Optional: the encoder output with per-layer cross-attention keys/values computed once for all K steps. */
  withCrossKeyValues?(encOut: E): E;
}

export interface DiffusionGeneratorDeps {
  tgtDict: Dictionary;
  options: DiffusionGenerationOptions;
  seed: number;
  /** Needed for candidateSelection 'ar-rerank'. */
  reranker?: ArScorer;
  /** --remove-bpe: BLEU-MBR compares words, as the official bleu_rerank (undefined: the pieces). */
  removeBpe?: string;
  /** Positions one denoiser pass may hold before the batch is split (default 24576). */
  maxCandidateTokens?: number;
}

/** History rows: one per network call (decoding order), the chosen candidate's argmax tokens. */
export interface DiffusionGenerator extends SequenceGenerator {
  generateWithHistory(batch: Batch): GenerationWithHistory;
}

function checkOptions(o: DiffusionGenerationOptions, T: number, reranker: ArScorer | undefined): void {
  const bad = (msg: string): never => {
    throw new DifformerError('DIFFORMER_BAD_OPTION', msg);
  };
  if (!Number.isInteger(o.decodingSteps) || o.decodingSteps < 1 || o.decodingSteps > T) bad(`--decoding-steps must be in 1..${T} (the model's --diffusion-steps), got ${o.decodingSteps}`);
  if (!Number.isInteger(o.decodingEarlyStopping) || o.decodingEarlyStopping < 0 || o.decodingEarlyStopping >= o.decodingSteps) {
    bad(`--decoding-early-stopping must be in 0..${o.decodingSteps - 1} (below --decoding-steps), got ${o.decodingEarlyStopping}`);
  }
  if (!Number.isInteger(o.lengthBeamSize) || o.lengthBeamSize < 1) bad(`--length-beam-size must be a positive integer, got ${o.lengthBeamSize}`);
  if (!Number.isInteger(o.noiseBeamSize) || o.noiseBeamSize < 1) bad(`--noise-beam-size must be a positive integer, got ${o.noiseBeamSize}`);
  if (!(o.decodingRescalingFactor >= 0)) bad(`--decoding-rescaling-factor must be >= 0, got ${o.decodingRescalingFactor}`);
  if (o.decodingFixedT !== undefined && !(o.decodingFixedT >= 0 && o.decodingFixedT < 1)) bad(`--decoding-fixed-t must be in [0, 1), got ${o.decodingFixedT}`);
  if (o.candidateSelection === 'ar-rerank' && reranker === undefined) {
    bad('--candidate-selection ar-rerank needs an autoregressive reranker with the same dictionary: pass --path difformer.pt:transformer.pt');
  }
}

/** Builds the diffusion generator; beamLabel = b1·b2. */
export function buildDiffusionGenerator<E>(model: DiffusionModel<E>, deps: DiffusionGeneratorDeps): DiffusionGenerator {
  const o = deps.options;
  const T = model.opts.diffusionSteps;
  checkOptions(o, T, deps.reranker);
  const rng = new Rng(deps.seed);
  const chain: Diffusion = respace(namedDiffusion(o.decodingNoiseSchedule ?? model.opts.noiseSchedule, T), spaceTimesteps(T, o.decodingSteps));
  const b = o.lengthBeamSize * o.noiseBeamSize;
  const ids = { bos: deps.tgtDict.bosIndex, pad: deps.tgtDict.padIndex, eos: deps.tgtDict.eosIndex };
  const netTime = (k: number): number =>
    modelTimestep(o.decodingFixedT !== undefined ? o.decodingFixedT * T : chain.timestepMap[k]!, T, model.opts.rescaleTimesteps);
  const normal = (shape: [number, number, number], std: number): tf.Tensor3D => tf.tensor3d(rng.fillNormal(shape[0] * shape[1] * shape[2], 0, std), shape);

  /**
   * f over row blocks of z [N, L, D] whose logits [n, L, V] stay under ~64 MB each, outputs
   * concatenated along rows: b1*b2 candidates times a 5k-50k vocabulary would otherwise make
   * one logits tensor of gigabytes (the wasm heap is 4 GB; tfjs-wasm fails on a single tensor
   * past 2 GB).
   */
  function byRowBlocks(z: tf.Tensor3D, f: (part: tf.Tensor3D) => tf.Tensor[]): tf.Tensor[] {
    const [n, l] = z.shape;
    const rows = Math.max(1, Math.floor(LOGIT_BLOCK_ELEMENTS / Math.max(1, l * deps.tgtDict.size)));
    if (rows >= n) return tf.tidy(() => f(z));
    return tf.tidy(() => {
      const parts: tf.Tensor[][] = [];
      for (let start = 0; start < n; start += rows) parts.push(f(tf.slice(z, [start, 0, 0], [Math.min(rows, n - start), -1, -1])));
      return parts[0]!.map((_, j) => tf.concat(parts.map((p) => p[j]!), 0));
    });
  }

  /** argmax_v z·Eᵀ per position: [N, L] int32. */
  function argmaxTokens(z: tf.Tensor3D): tf.Tensor2D {
    return byRowBlocks(z, (part) => [tf.argMax(model.logits(part), 2)])[0] as tf.Tensor2D;
  }

  /** Argmax tokens of z0hat at positions < length, per candidate. */
  function argmaxRows(z: tf.Tensor3D, lengths: Int32Array): Int32Array[] {
    const t = argmaxTokens(z);
    const data = t.dataSync() as Int32Array;
    t.dispose();
    const width = z.shape[1];
    return Array.from(lengths, (len, c) => data.slice(c * width, c * width + len));
  }

  function generateWithHistory(batch: Batch): GenerationWithHistory {
    const bsz = batch.bsz;
    const src = tf.tensor2d(batch.srcTokens, [bsz, batch.srcLen], 'int32');
    const first = model.encode(src, false);
    const lengths = candidateLengths(model.predictLengths(first), o.lengthBeamSize, o.noiseBeamSize, model.opts.maxTargetPositions);
    const order = tf.tensor1d(Int32Array.from({ length: bsz * b }, (_, c) => Math.floor(c / b)), 'int32'); // [N] sentence of each candidate
    const reordered = model.reorderEncoderOut(first, order);
    model.disposeEncoderOut(first);
    let enc = reordered;
    if (model.withCrossKeyValues !== undefined) {
      enc = model.withCrossKeyValues(reordered);
      model.disposeEncoderOut(reordered);
    }
    const n = bsz * b;
    const maxLen = Math.max(...lengths);
    const d = model.opts.latentDim;
    const maskData = new Float32Array(n * maxLen);
    lengths.forEach((len, c) => maskData.fill(1, c * maxLen, c * maxLen + len));
    const mask = tf.tensor2d(maskData, [n, maxLen]); // [N, L]
    const fDec = o.decodingRescalingFactor;

    // l2 clamping compares with the target embeddings of the whole vocabulary, s·E (z0 space)
    const table: tf.Tensor2D | null =
      o.clamping && o.clampingMode === 'l2'
        ? tf.tidy(() => tf.squeeze(model.embedTarget(tf.range(0, deps.tgtDict.size, 1, 'int32').expandDims(0) as tf.Tensor2D), [0]) as tf.Tensor2D) // [V, D]
        : null;
    const clamp = (pred: tf.Tensor3D): tf.Tensor3D =>
      table ? (byRowBlocks(pred, (part) => [nearestEmbeddingClamp(part, table).clamped])[0] as tf.Tensor3D) : model.embedTarget(argmaxTokens(pred));

    let z = normal([n, maxLen, d], fDec); // z_K, [N, L, D]
    let prev: tf.Tensor3D | null = null;
    const steps: Int32Array[][] = [];
    for (let k = o.decodingSteps - 1; k >= o.decodingEarlyStopping; k--) {
      const z0hat: tf.Tensor3D = tf.tidy(() => {
        const pred = model.denoise(z, netTime(k), mask, enc, prev, false);
        return o.clamping ? clamp(pred) : pred;
      });
      if (o.retainIterHistory) steps.push(argmaxRows(z0hat, lengths));
      if (k > o.decodingEarlyStopping) {
        const zPrev = z;
        z = tf.tidy(() => posteriorSample(chain, k, z0hat, zPrev, normal([n, maxLen, d], 1), fDec));
        zPrev.dispose();
      }
      prev?.dispose();
      prev = z0hat;
    }
    z.dispose();
    table?.dispose();

    // Final tokens and log-probs of the last z0hat.
    const [tokT, scT] = byRowBlocks(prev!, (part) => {
      const lp = tf.logSoftmax(model.logits(part));
      return [tf.argMax(lp, 2), tf.max(lp, 2)];
    });
    const tok = tokT!.dataSync() as Int32Array;
    const sc = scT!.dataSync() as Float32Array;
    const raws: RawCandidate[] = Array.from(lengths, (len, c) => {
      const scores = sc.slice(c * maxLen, c * maxLen + len);
      // every candidate runs all K - E denoiser passes: its last step index is K - E - 1
      return { tokens: tok.slice(c * maxLen, c * maxLen + len), scores, score: scores.reduce((a, v) => a + v, 0) / len, steps: o.decodingSteps - o.decodingEarlyStopping - 1 };
    });
    tf.dispose([tokT!, scT!, prev!, mask, order, src]);
    model.disposeEncoderOut(enc);

    const sel = selectionScores(raws, batch);
    const hypos = hypothesesBySentence(raws, sel, b, ids);
    if (!o.retainIterHistory) return { hypos, history: undefined };
    const history: Int32Array[][] = [];
    for (let i = 0; i < bsz; i++) {
      const best = i * b + bestIndex(sel.slice(i * b, (i + 1) * b));
      history.push(steps.map((rows) => toHypothesisTokens({ tokens: rows[best]!, scores: new Float32Array(rows[best]!.length), score: 0 }, ids).tokens));
    }
    return { hypos, history };
  }

  /** Selection score of every candidate (the model's own score when b = 1, as the official code). */
  function selectionScores(raws: RawCandidate[], batch: Batch): number[] {
    const own = raws.map((r) => r.score);
    if (b === 1 || o.candidateSelection === 'model') return own;
    if (o.candidateSelection === 'bleu-mbr') {
      // the official code decodes with unk_string UNKNOWNTOKENINHYP (one token under 13a, not '<', 'unk', '>')
      const strings = raws.map((r) => postProcess(deps.tgtDict.string(r.tokens, { unkString: 'UNKNOWNTOKENINHYP' }), deps.removeBpe));
      const out: number[] = [];
      for (let i = 0; i < batch.bsz; i++) out.push(...bleuMbrScores(strings.slice(i * b, (i + 1) * b), own.slice(i * b, (i + 1) * b)));
      return out;
    }
    return arRerankScores(deps.reranker!, raws, batch, b, ids);
  }

  /**
   * Sentences decoded together: b1*b2 candidates per sentence multiply the batch, and one
   * denoiser pass keeps a layer's activations for all of them (e.g. 100 sentences x 7x3 x 60
   * positions x FFN 1024 = 0.5 GB per tensor), so large --batch-size values are split to keep
   * each pass under MAX_CANDIDATE_TOKENS positions. Candidates are denoised independently, so
   * only the noise draws differ from one big pass (as with another --batch-size); the output is
   * still determined by --seed and --batch-size.
   */
  function generateInBlocks(batch: Batch): GenerationWithHistory {
    const perSentence = b * (batch.srcLen + o.lengthBeamSize + 8); // predicted lengths sit near the source length
    return decodeInSentenceBlocks(batch, perSentence, deps.maxCandidateTokens ?? MAX_CANDIDATE_TOKENS, generateWithHistory);
  }

  return {
    beamLabel: b,
    generate: (batch) => generateInBlocks(batch).hypos,
    generateWithHistory: generateInBlocks,
  };
}

/** Positions (candidates x length) one denoiser pass may hold. */
const MAX_CANDIDATE_TOKENS = 24576;
