/**
 * fairseq's NAT length head (`nonautoregressive_transformer.py` forward_length /
 * forward_length_prediction), shared by CMLM and the diffusion models: the mean of the encoder
 * output over non-pad source positions times W_len (`decoder.embed_length.weight`, 256 x C) gives
 * logits over 256 length classes. A class is tgt - src + 128 with `offset` (the official
 * Difformer's --pred-length-offset) or tgt itself, both counting BOS/EOS, clamped to [0, 255].
 */
import * as tf from '@tensorflow/tfjs';
import type { EncoderOut } from './encoder.js';
import { linear } from './linear.js';
import { normal, untaped, type ParamStore } from './params.js';

/** Length classes of fairseq's NAT length head. */
export const LENGTH_CLASSES = 256;
const LENGTH_OFFSET = 128;
const WEIGHT = 'decoder.embed_length.weight';

/** The class before clamping: tgt - src + 128 (offset) or tgt; lengths count BOS/EOS. */
function unclampedLengthClass(tgtLen: number, srcLen: number, offset: boolean): number {
  return offset ? tgtLen - srcLen + LENGTH_OFFSET : tgtLen;
}

/** fairseq forward_length_prediction: the class clamped to [0, 255]. */
export function lengthClass(tgtLen: number, srcLen: number, offset: boolean): number {
  return Math.min(LENGTH_CLASSES - 1, Math.max(0, unclampedLengthClass(tgtLen, srcLen, offset)));
}

/** Whether the length head can name this pair's length: its unclamped class lies in [0, 255]. */
export function lengthClassFits(tgtLen: number, srcLen: number, offset: boolean): boolean {
  const c = unclampedLengthClass(tgtLen, srcLen, offset);
  return c >= 0 && c < LENGTH_CLASSES;
}

/** Inverse of `lengthClass` at inference: class - 128 + src (offset) or class. No clamping. */
export function lengthFromClass(cls: number, srcLen: number, offset: boolean): number {
  return offset ? cls - LENGTH_OFFSET + srcLen : cls;
}

/** W_len [256, dim], N(0, 0.02) under BERT init (FairseqNATModel), else N(0, dim^-0.5) as nn.Embedding. */
export function initLengthHead(store: ParamStore, dim: number, bertInit: boolean): void {
  store.create(WEIGHT, [LENGTH_CLASSES, dim], normal(bertInit ? 0.02 : dim ** -0.5));
}

/**
 * Unnormalised length logits [B, 256]. `stopGrad` (--sg-length-pred) keeps the length loss
 * from training the encoder, as the official code's detach of the pooled features.
 */
export function lengthLogits(store: ParamStore, encOut: EncoderOut, stopGrad: boolean): tf.Tensor2D {
  return tf.tidy(() => {
    const keep = tf.sub(1, encOut.paddingMask); // [B, S]
    const sum = tf.sum(tf.mul(encOut.out, tf.expandDims(keep, 2)), 1); // [B, C]
    let mean = tf.div(sum, tf.expandDims(tf.maximum(tf.sum(keep, 1), 1), 1)) as tf.Tensor2D; // [B, C]
    if (stopGrad) {
      const m = mean;
      mean = untaped(m, () => tf.clone(m));
    }
    return linear(mean, store.get(WEIGHT) as tf.Tensor2D); // [B, 256]
  });
}

/** Predicted target lengths (argmax class mapped back; BOS/EOS included), not clamped. */
export function predictLengths(store: ParamStore, encOut: EncoderOut, stopGrad: boolean, offset: boolean): Int32Array {
  const [clsT, srcT] = tf.tidy(() => [tf.argMax(lengthLogits(store, encOut, stopGrad), 1), tf.sum(tf.sub(1, encOut.paddingMask), 1)]);
  const cls = clsT!.dataSync() as Int32Array;
  const srcLens = srcT!.dataSync() as Float32Array;
  tf.dispose([clsT!, srcT!]);
  return Int32Array.from(cls, (c, i) => lengthFromClass(c, Math.round(srcLens[i]!), offset));
}

/** Training classes [B] int32 from the source padding mask (1 = pad) and the target mask (1 = real). */
export function lengthTargets(srcPaddingMask: tf.Tensor2D, tgtMask: tf.Tensor2D, offset: boolean): tf.Tensor1D {
  return tf.tidy(() => {
    const srcLen = tf.sum(tf.sub(1, srcPaddingMask), 1); // [B]
    const tgtLen = tf.sum(tgtMask, 1); // [B]
    const cls = offset ? tf.add(tf.sub(tgtLen, srcLen), LENGTH_OFFSET) : tgtLen;
    return tf.cast(tf.clipByValue(cls, 0, LENGTH_CLASSES - 1), 'int32') as tf.Tensor1D;
  });
}
