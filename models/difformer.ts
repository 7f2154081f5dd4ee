/**
 * Difformer (Gao et al., arXiv 2212.09412) as the official code builds it (zhjgao/difformer
 * `difformer/difformer.py`, `difformer/modules.py`; reference-brief sections 1.1-1.4): a fairseq
 * NAT encoder-decoder whose decoder denoises latent token embeddings.
 *
 *   encoder:  x = P_enc_in(s E[src]) + pos; dropout; post-LN layers          s = sqrt(latent)
 *   length:   logits = W_len · meanpool(H) over non-pad source             256 classes
 *   target:   z0 = s E[y]  (LN over the latent dims with --embed-norm-before-proj, the paper's way)
 *   q_sample: z_t = sqrt(ab_t) z0 + F sqrt(1 - ab_t) eps                      t per sentence
 *   decoder:  h = SC([P_in z_t ; P_in z0hat_prev]) + TimeMLP(sin(t_model)) + pos(mask);
 *             embed LN (official: after projection); dropout; BIDIRECTIONAL layers with key
 *             padding and cross-attention; z0hat = P_out(h)
 *   logits:   z · Eᵀ (tied, unscaled, no bias)
 *
 * Training step (`forward`, brief 1.4): t ~ U{0..T-1} per sentence, one self-conditioning coin
 * per batch (p = 0.5) whose first pass runs with dropout on and off the gradient tape.
 *
 * Randomness (t, eps, the coin, dropout) comes from the model's seeded `params.rng`, whose state
 * a checkpoint stores, so runs are reproducible and resumable. Gaussian noise is drawn in JS
 * (Box-Muller, `Rng.fillNormal`) and uploaded, not with tfjs's global random ops.
 *
 * Divergences: with `--vp-rf` the schedule is rescaled and the noise is NOT also multiplied by F
 * (the official code does both, which lowers the SNR by F^4; brief 8.7). Decoder lengths beyond
 * --max-target-positions are the sampler's concern (it clamps). Left out: embedding files,
 * layerdrop, adaptive input/softmax, the `edm`/`cdcd` schedules.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelDeps } from '../src/train/types.js';
import {
  alphaBarFn,
  betasForAlphaBar,
  diffusionFromBetas,
  modelTimestep,
  vpRescaledAlphaBar,
  type Diffusion,
} from '../src/diffusion/schedule.js';
import { qSample } from '../src/diffusion/process.js';
import { paddingBias, projectKeyValue, type KeyValue } from '../src/nn/attention.js';
import { dropout, type ForwardContext } from '../src/nn/dropout.js';
import { embed, initEmbedding } from '../src/nn/embedding.js';
import { disposeEncoderOut, initEncoder, layerOptions, reorderEncoderOut, runEncoder, type EncoderOptions, type EncoderOut } from '../src/nn/encoder.js';
import { activation, linearInit } from '../src/nn/ffn.js';
import { initLayerNorm, layerNorm } from '../src/nn/layer_norm.js';
import { initLengthHead, lengthLogits, lengthTargets, predictLengths } from '../src/nn/length_head.js';
import { linearNd } from '../src/nn/linear.js';
import { normal, ParamStore, tidyObject, torchLinearWeight, untaped, type InitStyle } from '../src/nn/params.js';
import { embedPositions, initPositions, timestepEmbedding } from '../src/nn/positions.js';
import { initProjection, project, type ProjectionInit } from '../src/nn/projection.js';
import { decoderLayer, initDecoderLayer, type LayerOptions } from '../src/nn/transformer_layer.js';
import type { ModelComponent } from '../src/registry.js';
import { checkDifformerOptions, difformerDefaults, difformerOptionTable, type DifformerDicts, type DifformerOptions } from './difformer_options.js';

export * from './difformer_options.js';
export type { EncoderOut };

/**
 * An encoder output that also carries every decoder layer's cross-attention keys/values,
 * projected once: the sampler calls the denoiser K times on the same source, and the K/V
 * projections would otherwise be recomputed at every step.
 */
export interface EncoderOutWithCrossKv extends EncoderOut {
  crossKv: KeyValue[];
}

function hasCrossKv(e: EncoderOut): e is EncoderOutWithCrossKv {
  return (e as Partial<EncoderOutWithCrossKv>).crossKv !== undefined;
}

/** What `forward` (one training step's network part) returns; the criterion turns it into losses. */
export interface DifformerForwardOutput {
  z0: tf.Tensor3D; // [B, L, D] s·E[y], not detached
  z0hat: tf.Tensor3D; // [B, L, D] second (gradient) pass
  /** 1 at non-pad target positions. [B, L] float32 */
  mask: tf.Tensor2D;
  lengthLogits: tf.Tensor2D; // [B, 256]
  lengthTarget: tf.Tensor1D; // [B] int32 classes
  /** Sampled timesteps (0..T-1), one per sentence. */
  t: Int32Array;
  /** Whether this batch's coin turned self-conditioning on. */
  selfCondUsed: boolean;
}

/** Random choices of a training forward that a caller may fix (tests, analyses). */
export interface ForwardDraws {
  /** Timestep per sentence, 0..T-1. */
  t?: Int32Array;
  /** eps [B, L, D]. */
  noise?: tf.Tensor3D;
  /** The self-conditioning coin (ignored without --self-cond). */
  selfCond?: boolean;
}

export class DifformerModel {
  readonly generatorFamily = 'diffusion' as const;
  readonly params: ParamStore;
  readonly opts: Readonly<DifformerOptions>;
  readonly dicts: DifformerDicts;
  /** s: sqrt(latentDim), or 1 with --no-scale-embedding (encoder and decoder). */
  readonly embedScale: number;
  /** The training process q(z_t | z0) (float64 quantities). */
  readonly diffusion: Diffusion;
  /** Multiplies eps in q_sample: F, or 1 under --vp-rf (the schedule carries F there). */
  readonly noiseScale: number;
  private readonly enc: EncoderOptions;
  private readonly dec: LayerOptions;

  constructor(opts: DifformerOptions, dicts: DifformerDicts, seed = 1) {
    checkDifformerOptions(opts, dicts);
    this.opts = Object.freeze({ ...opts });
    this.dicts = dicts;
    // One model width on both sides, post-LN as every official architecture; the token table is
    // latent-wide, so the encoder projects it up (encoder.project_in_dim) when the widths differ.
    this.enc = {
      tokenDim: opts.latentDim,
      layers: opts.encoderLayers,
      layer: layerOptions(opts, 'encoder', opts.modelDim, false),
      positions: true,
      learnedPos: opts.encoderLearnedPos,
      maxPositions: opts.maxSourcePositions,
    };
    this.dec = layerOptions(opts, 'decoder', opts.modelDim, false);
    this.embedScale = opts.noScaleEmbedding ? 1 : Math.sqrt(opts.latentDim);
    const alphaBar = opts.vpRf ? vpRescaledAlphaBar(alphaBarFn(opts.noiseSchedule), opts.rescalingFactor) : alphaBarFn(opts.noiseSchedule);
    this.diffusion = diffusionFromBetas(betasForAlphaBar(opts.diffusionSteps, alphaBar));
    this.noiseScale = opts.vpRf ? 1 : opts.rescalingFactor;
    this.params = new ParamStore(seed);
    this.build();
  }

  /** Parameters in fairseq module order, with the official code's (PyTorch state-dict) names. */
  private build(): void {
    const o = this.opts;
    const p = this.params;
    const { src, tgt } = this.dicts;
    // The decoder's init_bert_params also re-initialises anything it shares with the encoder.
    const decInit: InitStyle = o.applyBertInit ? 'bert' : 'fairseq';
    const projected = o.latentDim !== o.modelDim; // else all three projections are identity
    initEncoder(p, this.enc, src, {
      tokens: o.shareAllEmbeddings ? decInit : 'fairseq',
      projectIn: projectionInit(o.latentDim, o.shareProjectInDim ? decInit : 'fairseq'),
    });

    if (o.shareAllEmbeddings) p.alias('decoder.embed_tokens.weight', 'encoder.embed_tokens.weight');
    else initEmbedding(p, 'decoder.embed_tokens.weight', tgt.size, o.latentDim, tgt.padIndex, decInit);
    p.alias('decoder.output_projection.weight', 'decoder.embed_tokens.weight');
    if (projected) {
      if (o.shareProjectInDim) p.alias('decoder.project_in_dim.weight', 'encoder.project_in_dim.weight');
      else initProjection(p, 'decoder.project_in_dim', o.latentDim, o.modelDim, projectionInit(o.latentDim, decInit));
      initProjection(p, 'decoder.project_out_dim', o.modelDim, o.latentDim, projectionInit(o.modelDim, decInit));
    }
    initPositions(p, 'decoder.embed_positions', {
      maxPositions: o.maxTargetPositions,
      dim: o.modelDim,
      padIndex: tgt.padIndex,
      learned: o.decoderLearnedPos,
      init: decInit,
    });
    for (let i = 0; i < o.decoderLayers; i++) initDecoderLayer(p, `decoder.layers.${i}`, this.dec, decInit);
    initLengthHead(p, o.modelDim, o.applyBertInit);
    if (o.embedNorm) initLayerNorm(p, 'decoder.embed_norm', o.embedNormBeforeProj ? o.latentDim : o.modelDim, { affine: o.embedNormAffine });
    if (o.selfCond) {
      const d = o.selfCondBeforeProj ? o.latentDim : o.modelDim; // build_ffn(2d, d, d): Linear, act, Linear, Dropout
      initProjection(p, 'decoder.self_cond_proj.0', 2 * d, d, linearInit(2 * d, decInit));
      initProjection(p, 'decoder.self_cond_proj.2', d, d, linearInit(d, decInit));
    }
    initProjection(p, 'decoder.embed_time.0', o.modelDim, 4 * o.modelDim, linearInit(o.modelDim, decInit));
    initProjection(p, 'decoder.embed_time.2', 4 * o.modelDim, o.modelDim, linearInit(4 * o.modelDim, decInit));
  }

  private ctx(training: boolean): ForwardContext {
    return { training, rng: this.params.rng };
  }

  get padIndex(): number {
    return this.dicts.tgt.padIndex;
  }

  get latentDim(): number {
    return this.opts.latentDim;
  }

  /** The decoder's bias-free latent -> model projection (identity when the widths agree). [B, L, D] -> [B, L, C] */
  private projectIn(x: tf.Tensor3D): tf.Tensor3D {
    const name = 'decoder.project_in_dim.weight';
    if (!this.params.has(name)) return x;
    return linearNd(x, this.params.get(name) as tf.Tensor2D) as tf.Tensor3D;
  }

  /** srcTokens [B, S] int32 (right-padded, BOS first). The caller disposes the result. */
  encode(srcTokens: tf.Tensor2D, training: boolean): EncoderOut {
    return runEncoder(this.params, this.enc, srcTokens, this.dicts.src.padIndex, this.ctx(training), this.embedScale);
  }

  reorderEncoderOut(e: EncoderOut, indices: tf.Tensor1D): EncoderOut {
    return reorderEncoderOut(e, indices);
  }

  disposeEncoderOut(e: EncoderOut): void {
    disposeEncoderOut(e);
    if (hasCrossKv(e)) for (const kv of e.crossKv) tf.dispose([kv.key, kv.value]);
  }

  /** `e` plus each decoder layer's projected cross-attention keys/values (new tensors; `e` is not consumed). */
  withCrossKeyValues(e: EncoderOut): EncoderOutWithCrossKv {
    const crossKv = Array.from({ length: this.opts.decoderLayers }, (_, i) =>
      projectKeyValue(this.params, `decoder.layers.${i}.encoder_attn`, e.out, this.dec.attentionHeads),
    );
    return { out: tf.clone(e.out), paddingMask: tf.clone(e.paddingMask), crossKv };
  }

  /** NAT forward_length (unnormalised). [B, 256] */
  lengthLogits(encOut: EncoderOut): tf.Tensor2D {
    return lengthLogits(this.params, encOut, this.opts.sgLengthPred);
  }

  /** Predicted target lengths (BOS/EOS included), not clamped. */
  predictLengths(encOut: EncoderOut): Int32Array {
    return predictLengths(this.params, encOut, this.opts.sgLengthPred, this.opts.predLengthOffset);
  }

  /** z0 = s·E[tokens] (LN over the latent dims with --embed-norm-before-proj). [B, L] -> [B, L, D] */
  embedTarget(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const z = embed(this.params.get('decoder.embed_tokens.weight') as tf.Tensor2D, tokens, this.embedScale);
      return this.opts.embedNorm && this.opts.embedNormBeforeProj ? layerNorm(this.params, 'decoder.embed_norm', z) : z;
    });
  }

  /** Tied output layer: z [B, L, D] -> logits z·Eᵀ [B, L, V]. */
  logits(z: tf.Tensor3D): tf.Tensor3D {
    return linearNd(z, this.params.get('decoder.embed_tokens.weight') as tf.Tensor2D) as tf.Tensor3D;
  }

  /** One t ~ U{0..T-1} per sentence from the model's RNG. */
  sampleTimesteps(batch: number): Int32Array {
    return Int32Array.from({ length: batch }, () => this.params.rng.int(this.opts.diffusionSteps));
  }

  /** What the network sees as time: t * 1000 / T with --rescale-timesteps. */
  modelTimesteps(t: ArrayLike<number>): Float32Array {
    return Float32Array.from(t, (v) => modelTimestep(v, this.opts.diffusionSteps, this.opts.rescaleTimesteps));
  }

  /** z_t = sqrt(ab_t) z0 + F sqrt(1 - ab_t) eps, t per sentence; eps from the model's RNG unless given. */
  qSample(z0: tf.Tensor3D, t: Int32Array, noise?: tf.Tensor3D): tf.Tensor3D {
    const [b, l, d] = z0.shape;
    if (t.length !== b) throw new Error(`qSample: ${t.length} timesteps for a batch of ${b}`); // before any draw
    return tf.tidy(() => {
      const eps = noise ?? tf.tensor3d(this.params.rng.fillNormal(b * l * d, 0, 1), [b, l, d]);
      return qSample(this.diffusion, z0, t, eps, this.noiseScale);
    });
  }

  /** build_ffn(2d, d, d) with dropout: [N, 2d] -> [N, d]. */
  private selfCondProj(x: tf.Tensor3D, ctx: ForwardContext): tf.Tensor3D {
    const [b, l, c2] = x.shape;
    const h = activation(project(this.params, 'decoder.self_cond_proj.0', tf.reshape(x, [b * l, c2])), this.opts.activationFn);
    const y = project(this.params, 'decoder.self_cond_proj.2', h); // [B*L, d]
    return dropout(tf.reshape(y, [b, l, y.shape[1]]), this.opts.dropout, ctx);
  }

  /** TimeMLP(sinusoid(t_model)): one row per sentence, or one shared row. -> [B, 1, C] */
  private timeEmbedding(tModel: Float32Array | number, batch: number): tf.Tensor3D {
    const c = this.opts.modelDim;
    const rows = typeof tModel === 'number' ? [tModel] : tModel;
    const s = tf.tensor2d(timestepEmbedding(rows, c), [rows.length, c]);
    const h = activation(project(this.params, 'decoder.embed_time.0', s), this.opts.activationFn);
    const e = tf.reshape(project(this.params, 'decoder.embed_time.2', h), [rows.length, 1, c]) as tf.Tensor3D;
    return rows.length === batch ? e : (tf.tile(e, [batch, 1, 1]) as tf.Tensor3D);
  }

  /** forward_hidden: self-conditioning, + time, + positions from the mask, embed LN, dropout. [B, L, C] */
  private decoderInput(zt: tf.Tensor3D, tModel: Float32Array | number, mask: tf.Tensor2D, prev: tf.Tensor3D | null, ctx: ForwardContext): tf.Tensor3D {
    const o = this.opts;
    const [b] = zt.shape;
    let h: tf.Tensor3D;
    if (o.selfCond) {
      const p0 = prev ?? tf.zerosLike(zt);
      h = o.selfCondBeforeProj
        ? this.projectIn(this.selfCondProj(tf.concat([zt, p0], 2), ctx)) // [B, L, 2D] -> [B, L, D] -> [B, L, C]
        : this.selfCondProj(tf.concat([this.projectIn(zt), this.projectIn(p0)], 2), ctx); // [B, L, 2C] -> [B, L, C]
    } else {
      h = this.projectIn(zt);
    }
    h = tf.add(h, this.timeEmbedding(tModel, b));
    // Positions come from the length mask: slot i of a row gets table row pad + 1 + i.
    const pad = this.dicts.tgt.padIndex;
    const posTokens = tf.cast(tf.add(mask, pad), 'int32') as tf.Tensor2D; // [B, L]
    h = tf.add(h, embedPositions(this.params, 'decoder.embed_positions', posTokens, pad));
    if (o.embedNorm && !o.embedNormBeforeProj) h = layerNorm(this.params, 'decoder.embed_norm', h);
    return dropout(h, o.dropout, ctx);
  }

  /**
   * The denoiser f(z_t, t; x) -> z0hat. zt [B, L, D]; tModel: network time per sentence (or one
   * value for all); mask [B, L] float32, 1 at real positions; prev: previous z0hat (self-
   * conditioning; null = zeros). -> [B, L, D]
   */
  denoise(zt: tf.Tensor3D, tModel: Float32Array | number, mask: tf.Tensor2D, encOut: EncoderOut, prev: tf.Tensor3D | null, training: boolean): tf.Tensor3D {
    const ctx = this.ctx(training);
    return tf.tidy(() => {
      let h = this.decoderInput(zt, tModel, mask, prev, ctx); // [B, L, C]
      const selfBias = paddingBias(tf.sub(1, mask) as tf.Tensor2D); // keys only: no causal mask
      const bias = paddingBias(encOut.paddingMask);
      for (let i = 0; i < this.opts.decoderLayers; i++) {
        const cross = hasCrossKv(encOut) ? { kv: encOut.crossKv[i]!, bias } : { encoderOut: encOut.out, bias };
        h = decoderLayer(this.params, `decoder.layers.${i}`, h, selfBias, cross, this.dec, ctx);
      }
      return this.params.has('decoder.project_out_dim.weight')
        ? (linearNd(h, this.params.get('decoder.project_out_dim.weight') as tf.Tensor2D) as tf.Tensor3D) // [B, L, D]
        : h;
    });
  }

  /**
   * The network part of one training step (brief 1.4). srcTokens [B, S], tgtTokens [B, L] int32
   * (BOS ... EOS, right-padded). Draws t, eps, the self-conditioning coin and dropout masks
   * from `params.rng`, in that order; `draws` fixes any of the first three instead.
   */
  forward(srcTokens: tf.Tensor2D, tgtTokens: tf.Tensor2D, training: boolean, draws: ForwardDraws = {}): DifformerForwardOutput {
    const o = this.opts;
    let t: Int32Array = new Int32Array(0);
    let selfCondUsed = false;
    const out = tidyObject(() => {
      const encOut = this.encode(srcTokens, training);
      const lengthLogits = this.lengthLogits(encOut);
      const mask = tf.cast(tf.notEqual(tgtTokens, this.dicts.tgt.padIndex), 'float32') as tf.Tensor2D; // [B, L]
      const lengthTarget = lengthTargets(encOut.paddingMask, mask, o.predLengthOffset);

      const z0 = this.embedTarget(tgtTokens); // [B, L, D]
      t = draws.t ?? this.sampleTimesteps(z0.shape[0]);
      const tModel = this.modelTimesteps(t);
      const zt = this.qSample(z0, t, draws.noise); // all positions, pad included, as the official code
      let prev: tf.Tensor3D | null = null;
      // One coin per batch (Python's random() in the official code), not per sentence.
      if (o.selfCond && (draws.selfCond ?? this.params.rng.uniform() < 0.5)) {
        selfCondUsed = true;
        prev = untaped(zt, () => this.denoise(zt, tModel, mask, encOut, null, training));
      }
      const z0hat = this.denoise(zt, tModel, mask, encOut, prev, training);
      return { z0, z0hat, mask, lengthLogits, lengthTarget };
    });
    return { ...out, t, selfCondUsed };
  }

  dispose(): void {
    this.params.dispose();
  }
}

/** Bias-free projection init: nn.Linear's default, or N(0, 0.02) under BERT init. */
function projectionInit(inDim: number, style: InitStyle): ProjectionInit {
  return { weight: style === 'bert' ? normal(0.02) : torchLinearWeight(inDim), bias: null };
}

export const difformerModelComponent: ModelComponent<DifformerOptions, DifformerModel, ModelDeps> = {
  name: 'difformer',
  description: 'Difformer: denoising diffusion Transformer on the embedding space (Gao et al.)',
  prependBos: true,
  options: difformerOptionTable,
  defaults: difformerDefaults,
  build: (opts, deps) => new DifformerModel(opts, { src: deps.srcDict, tgt: deps.tgtDict }, deps.seed),
};
