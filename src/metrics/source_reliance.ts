/**
 * Does a diffusion denoiser read its source? One denoising pass from z_t (the gold target's
 * embeddings noised to timestep t, gold length) with each sentence's own source and with the
 * next sentence's source, same noise; token accuracy of argmax(z0hat·Eᵀ) for both. A model
 * that ignores the source scores the same twice (the failure the BERT-style init showed on
 * gettext at small budgets); one that reads it loses accuracy with the wrong source, most at
 * high t where z_t carries little of the target.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import type { EncoderOut } from '../nn/encoder.js';
import { Rng } from '../nn/params.js';

/** What the probe needs from a diffusion model (the Difformer and Diff-LM have it). */
export interface DenoiserProbe {
  readonly padIndex: number;
  readonly latentDim: number;
  encode(srcTokens: tf.Tensor2D, training: boolean): EncoderOut;
  disposeEncoderOut(e: EncoderOut): void;
  embedTarget(tokens: tf.Tensor2D): tf.Tensor3D;
  qSample(z0: tf.Tensor3D, t: Int32Array, noise?: tf.Tensor3D): tf.Tensor3D;
  modelTimesteps(t: ArrayLike<number>): Float32Array;
  denoise(zt: tf.Tensor3D, tModel: Float32Array | number, mask: tf.Tensor2D, encOut: EncoderOut, prev: tf.Tensor3D | null, training: boolean): tf.Tensor3D;
  logits(z: tf.Tensor3D): tf.Tensor3D;
}

export function isDenoiserProbe(m: object): m is DenoiserProbe {
  return ['encode', 'embedTarget', 'qSample', 'modelTimesteps', 'denoise', 'logits'].every((k) => typeof (m as Record<string, unknown>)[k] === 'function');
}

export interface RelianceRow {
  t: number;
  /** Correctly predicted real tokens (BOS, EOS and padding left out) with each sentence's own source. */
  right: number;
  /** The same with the next sentence's source (the last takes the first's). */
  wrong: number;
  /** Real target tokens counted. */
  tokens: number;
}

/** Sources rotated by one row: row b gets row b+1's source (same padded width). */
export function rotateSources(batch: Batch): Int32Array {
  const w = batch.srcLen;
  const out = new Int32Array(batch.srcTokens.length);
  for (let b = 0; b < batch.bsz; b++) {
    const from = (b + 1) % batch.bsz;
    out.set(batch.srcTokens.subarray(from * w, (from + 1) * w), b * w);
  }
  return out;
}

/**
 * Counts at each timestep with the right and the rotated source, for one batch (sum them over
 * batches; accuracy = right / tokens). The first pass of the sampler: no self-conditioning
 * input (zeros). Needs a batch of at least 2 sentences.
 */
export function sourceReliance(model: DenoiserProbe, batch: Batch, timesteps: number[], special: { bos: number; eos: number }, seed = 1): RelianceRow[] {
  if (batch.bsz < 2) throw new RangeError('source reliance needs at least 2 sentences');
  const { bsz, tgtLen } = batch;
  const rng = new Rng(seed);
  const made: tf.Tensor[] = [];
  const encs: EncoderOut[] = [];
  try {
    const tgt = tf.tensor2d(batch.target, [bsz, tgtLen], 'int32');
    made.push(tgt);
    for (const s of [batch.srcTokens, rotateSources(batch)]) {
      const src = tf.tensor2d(s, [bsz, batch.srcLen], 'int32');
      made.push(src);
      encs.push(model.encode(src, false));
    }
    // the denoiser sees the whole length (BOS ... EOS); only real tokens are scored
    const mask = tf.tidy(() => tf.cast(tf.notEqual(tgt, model.padIndex), 'float32') as tf.Tensor2D);
    made.push(mask);
    const scored = Float32Array.from(batch.target, (tok) => (tok === model.padIndex || tok === special.bos || tok === special.eos ? 0 : 1));
    const tokens = scored.reduce((a, v) => a + v, 0);
    const keep = tf.tensor2d(scored, [bsz, tgtLen]);
    const z0 = model.embedTarget(tgt); // the same clean target at every timestep
    made.push(keep, z0);
    return timesteps.map((t) => {
      const tt = new Int32Array(bsz).fill(t);
      const [right, wrong] = tf.tidy(() => {
        const noise = tf.tensor3d(rng.fillNormal(bsz * tgtLen * model.latentDim, 0, 1), [bsz, tgtLen, model.latentDim]);
        const zt = model.qSample(z0, tt, noise);
        const tm = model.modelTimesteps(tt);
        return encs.map((enc) => {
          const pred = tf.argMax(model.logits(model.denoise(zt, tm, mask, enc, null, false)), 2);
          return tf.sum(tf.mul(tf.cast(tf.equal(pred, tgt), 'float32'), keep)).arraySync() as number;
        });
      });
      return { t, right: right!, wrong: wrong!, tokens };
    });
  } finally {
    encs.forEach((e) => model.disposeEncoderOut(e));
    tf.dispose(made);
  }
}
