/**
 * fairseq v0.10.2's `cmlm_transformer` (Ghazvininejad et al. 2019, "Mask-Predict"; fairseq
 * `models/nat/cmlm_transformer.py`, `nonautoregressive_transformer.py`, the `random_mask` noise of
 * `tasks/translation_lev.py`; reference-brief 3.1-3.2): a conditional masked language model.
 *
 *   encoder:  x = s E[src] + pos(src); dropout; layers (LN if normalize_before)    s = sqrt(C)
 *   length:   logits = W_len · meanpool(H) over non-pad source positions           256 classes
 *             class = tgt_len (default) or tgt_len - src_len + 128 (--pred-length-offset), both
 *             counting BOS/EOS, clamped to [0, 255]
 *   noise:    random_mask: per sentence u ~ U(0,1), mask k = floor(N u + 1) of its N real tokens
 *             (not BOS/EOS/pad), positions uniformly at random; masked tokens become <unk>
 *   decoder:  y = s E[prev] + pos(prev); dropout; BIDIRECTIONAL layers (key padding only) with
 *             cross-attention; LN if normalize_before; logits = y W_outᵀ (W_out = E when shared)
 *   loss:     (criterions/nat_loss.ts) smoothed CE at positions whose decoder input is <unk>, plus
 *             lengthLossFactor x length CE
 *
 * Defaults are the `cmlm_transformer` architecture plus the structural flags of fairseq's CMLM
 * script (examples/nonautoregressive_translation/scripts.md): learned positions on both sides and
 * --apply-bert-init (BERT-style N(0, 0.02) init of encoder AND decoder, as FairseqNATModel does);
 * share-all-embeddings is the architecture's own default. Each has a --no-x form. Regularisation
 * and optimisation flags of the script (dropout 0.3, weight decay 0.01, lr, warmup) are left to
 * the command line. --pred-length-offset is off: the script does not pass it.
 *
 * All randomness (mask draws, dropout) comes from the model's seeded `params.rng`, whose state a
 * checkpoint stores, so training is reproducible and resumable.
 *
 * Divergences: a target with no real token (BOS EOS only) gets no mask (fairseq would mask one
 * special token there; training skips such lines anyway). Left out: --src-embedding-copy (not
 * supported by fairseq's CMLM either), embedding files, layerdrop, adaptive input/softmax, the
 * translation_lev noises random_delete and no_noise (`--noise full_mask` is kept: vanilla NAT).
 */
import * as tf from '@tensorflow/tfjs';
import type { NatLossOutputs } from '../criterions/nat_loss.js';
import type { Batch } from '../src/data/language_pair_dataset.js';
import { DifformerError } from '../src/errors.js';
import { paddingBias } from '../src/nn/attention.js';
import { dropout, type ForwardContext } from '../src/nn/dropout.js';
import { embed, initEmbedding } from '../src/nn/embedding.js';
import {
  decoderLayerOptions,
  disposeEncoderOut,
  initEncoder,
  reorderEncoderOut,
  runEncoder,
  transformerEncoderOptions,
  type EncoderOptions,
  type EncoderOut,
} from '../src/nn/encoder.js';
import { initLayerNorm, layerNorm } from '../src/nn/layer_norm.js';
import { initLengthHead, lengthClass, lengthLogits, predictLengths } from '../src/nn/length_head.js';
import { linear } from '../src/nn/linear.js';
import { normal, ParamStore, tidyObject, type InitStyle, type Rng } from '../src/nn/params.js';
import { embedPositions, initPositions } from '../src/nn/positions.js';
import { decoderLayer, initDecoderLayer, type LayerOptions } from '../src/nn/transformer_layer.js';
import { boolFlag, choiceFlag, floatFlag, type OptionTable } from '../src/options.js';
import type { ModelComponent } from '../src/registry.js';
import type { ModelDeps } from '../src/train/types.js';
import { transformerOptionTable } from './transformer_component.js';
import { transformerDefaults, type DictInfo, type TransformerOptions } from './transformer.js';

export type { EncoderOut };

/** translation_lev's --noise choices kept here. */
export type CmlmNoise = 'random_mask' | 'full_mask';
export const CMLM_NOISES: readonly CmlmNoise[] = ['random_mask', 'full_mask'];

export interface CmlmOptions extends TransformerOptions {
  /** Length classes are tgt - src + 128 (else the absolute target length). */
  predLengthOffset: boolean;
  lengthLossFactor: number;
  /** Stop the length loss's gradient at the encoder output. */
  sgLengthPred: boolean;
  /** BERT-style N(0, 0.02) init of encoder and decoder (fairseq's FairseqNATModel). */
  applyBertInit: boolean;
  /** Training noise on the decoder input (translation_lev --noise). */
  noise: CmlmNoise;
}

/** `cmlm_transformer` plus the script's structural flags (see the file comment). */
export const cmlmDefaults: Readonly<CmlmOptions> = Object.freeze({
  ...transformerDefaults,
  encoderLearnedPos: true,
  decoderLearnedPos: true,
  shareAllEmbeddings: true,
  predLengthOffset: false,
  lengthLossFactor: 0.1,
  sgLengthPred: false,
  applyBertInit: true,
  noise: 'random_mask' as CmlmNoise,
});

/** Named architectures as partial options over `cmlmDefaults`. */
export const cmlmArchitectures: Record<string, Partial<CmlmOptions>> = {
  cmlm_transformer: {},
  cmlm_transformer_wmt_en_de: {},
  // Not in fairseq: transformer_tiny's sizes, small enough to train in seconds on a CPU.
  cmlm_tiny: {
    encoderEmbedDim: 64,
    encoderFfnEmbedDim: 256,
    encoderAttentionHeads: 4,
    decoderEmbedDim: 64,
    decoderFfnEmbedDim: 256,
    decoderAttentionHeads: 4,
    encoderLayers: 2,
    decoderLayers: 2,
    maxSourcePositions: 256,
    maxTargetPositions: 256,
  },
};

export const cmlmOptionTable: OptionTable<CmlmOptions> = {
  ...transformerOptionTable,
  predLengthOffset: boolFlag('--pred-length-offset', 'predict target length minus source length'),
  lengthLossFactor: floatFlag('--length-loss-factor', 'weight of the length loss'),
  sgLengthPred: boolFlag('--sg-length-pred', 'stop gradients from the length loss into the encoder'),
  applyBertInit: boolFlag('--apply-bert-init', 'BERT-style N(0, 0.02) init of encoder and decoder'),
  noise: choiceFlag('--noise', 'training noise on the decoder input (translation_lev)', CMLM_NOISES),
};

/** defaults < named architecture < overrides. */
export function resolveCmlmOptions(arch = 'cmlm_transformer', overrides: Partial<CmlmOptions> = {}): CmlmOptions {
  const preset = cmlmArchitectures[arch];
  if (preset === undefined) {
    throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `unknown architecture '${arch}' (--arch); known: ${Object.keys(cmlmArchitectures).join(', ')}`);
  }
  return { ...cmlmDefaults, ...preset, ...overrides };
}

/** A dictionary as the model needs it: the Transformer's view plus <unk>, the mask symbol. */
export interface NatDictInfo extends DictInfo {
  readonly unkIndex: number;
}

export interface CmlmDicts {
  src: NatDictInfo;
  tgt: NatDictInfo;
}

function checkCmlmOptions(o: CmlmOptions, dicts: CmlmDicts): void {
  const bad = (msg: string): never => {
    throw new DifformerError('DIFFORMER_BAD_OPTION', msg);
  };
  if (o.encoderEmbedDim % o.encoderAttentionHeads !== 0 || o.decoderEmbedDim % o.decoderAttentionHeads !== 0) {
    bad(`embed dim must divide by attention heads: encoder ${o.encoderEmbedDim}/${o.encoderAttentionHeads}, decoder ${o.decoderEmbedDim}/${o.decoderAttentionHeads}`);
  }
  if (o.encoderEmbedDim !== o.decoderEmbedDim) bad(`--encoder-embed-dim ${o.encoderEmbedDim} must equal --decoder-embed-dim ${o.decoderEmbedDim}`);
  const { src, tgt } = dicts;
  const joined = src === tgt || (src.size === tgt.size && src.padIndex === tgt.padIndex && (src.symbols === undefined || tgt.symbols === undefined || src.symbols.every((s, i) => s === tgt.symbols?.[i])));
  if (o.shareAllEmbeddings && !joined) {
    bad(`--share-all-embeddings requires a joined dictionary (source has ${src.size} types, target ${tgt.size}); preprocess with --joined-dictionary or pass --no-share-all-embeddings`);
  }
}

export interface MaskIds {
  pad: number;
  bos: number;
  eos: number;
  unk: number;
}

/**
 * translation_lev's noise over a target [bsz, len] (row-major, BOS ... EOS, right-padded):
 * returns the decoder input with the chosen real tokens (not pad/BOS/EOS) replaced by <unk>.
 * random_mask: per sentence u ~ U(0,1), k = min(floor(N u + 1), N) of its N real tokens, the k
 * with the smallest of N uniform scores; full_mask: all N. Draws u, then the scores, per sentence.
 */
export function injectNoise(target: Int32Array, bsz: number, len: number, ids: MaskIds, rng: Rng, noise: CmlmNoise = 'random_mask'): Int32Array {
  if (target.length !== bsz * len) throw new Error(`injectNoise: target has ${target.length} entries, expected ${bsz} x ${len}`);
  const out = Int32Array.from(target);
  for (let b = 0; b < bsz; b++) {
    const real: number[] = [];
    for (let j = b * len; j < (b + 1) * len; j++) {
      const t = target[j]!;
      if (t !== ids.pad && t !== ids.bos && t !== ids.eos) real.push(j);
    }
    const n = real.length;
    if (n === 0) continue;
    if (noise === 'full_mask') {
      for (const j of real) out[j] = ids.unk;
      continue;
    }
    const k = Math.min(n, Math.floor(n * rng.uniform() + 1));
    const scores = real.map(() => rng.uniform());
    const order = real.map((_, i) => i).sort((x, y) => scores[x]! - scores[y]! || x - y);
    for (let i = 0; i < k; i++) out[real[order[i]!]!] = ids.unk;
  }
  return out;
}

export class CmlmModel {
  readonly generatorFamily = 'mask-predict' as const;
  readonly params: ParamStore;
  readonly opts: Readonly<CmlmOptions>;
  readonly dicts: CmlmDicts;
  private readonly enc: EncoderOptions;
  private readonly dec: LayerOptions;
  private readonly encScale: number;
  private readonly decScale: number;

  constructor(opts: CmlmOptions, dicts: CmlmDicts, seed = 1) {
    checkCmlmOptions(opts, dicts);
    this.opts = Object.freeze({ ...opts, shareDecoderInputOutputEmbed: opts.shareDecoderInputOutputEmbed || opts.shareAllEmbeddings });
    this.dicts = dicts;
    this.enc = transformerEncoderOptions(opts);
    this.dec = decoderLayerOptions(opts);
    this.encScale = opts.noScaleEmbedding ? 1 : Math.sqrt(opts.encoderEmbedDim);
    this.decScale = opts.noScaleEmbedding ? 1 : Math.sqrt(opts.decoderEmbedDim);
    this.params = new ParamStore(seed);
    this.build();
  }

  /** Parameters in fairseq module order, with fairseq's state-dict names. */
  private build(): void {
    const o = this.opts;
    const p = this.params;
    const { src, tgt } = this.dicts;
    const init: InitStyle = o.applyBertInit ? 'bert' : 'fairseq';
    initEncoder(p, this.enc, src, { style: init });

    if (o.shareAllEmbeddings) p.alias('decoder.embed_tokens.weight', 'encoder.embed_tokens.weight');
    else initEmbedding(p, 'decoder.embed_tokens.weight', tgt.size, o.decoderEmbedDim, tgt.padIndex, init);
    if (!o.noTokenPositionalEmbeddings) {
      initPositions(p, 'decoder.embed_positions', { maxPositions: o.maxTargetPositions, dim: o.decoderEmbedDim, padIndex: tgt.padIndex, learned: o.decoderLearnedPos, init });
    }
    for (let i = 0; i < o.decoderLayers; i++) initDecoderLayer(p, `decoder.layers.${i}`, this.dec, init);
    if (o.decoderNormalizeBefore) initLayerNorm(p, 'decoder.layer_norm', o.decoderEmbedDim);
    if (o.shareDecoderInputOutputEmbed) p.alias('decoder.output_projection.weight', 'decoder.embed_tokens.weight');
    else p.create('decoder.output_projection.weight', [tgt.size, o.decoderEmbedDim], normal(o.applyBertInit ? 0.02 : o.decoderEmbedDim ** -0.5));
    initLengthHead(p, o.encoderEmbedDim, o.applyBertInit);
  }

  private ctx(training: boolean): ForwardContext {
    return { training, rng: this.params.rng };
  }

  get maxTargetPositions(): number {
    return this.opts.maxTargetPositions;
  }

  get maskIds(): MaskIds {
    const t = this.dicts.tgt;
    return { pad: t.padIndex, bos: t.bosIndex, eos: t.eosIndex, unk: t.unkIndex };
  }

  /** srcTokens [B, S] int32 (BOS first, right-padded). The caller disposes the result. */
  encode(srcTokens: tf.Tensor2D, training: boolean): EncoderOut {
    return runEncoder(this.params, this.enc, srcTokens, this.dicts.src.padIndex, this.ctx(training), this.encScale);
  }

  reorderEncoderOut(e: EncoderOut, indices: tf.Tensor1D): EncoderOut {
    return reorderEncoderOut(e, indices);
  }

  disposeEncoderOut(e: EncoderOut): void {
    disposeEncoderOut(e);
  }

  /** NAT forward_length (unnormalised). [B, 256] */
  lengthLogits(encOut: EncoderOut): tf.Tensor2D {
    return lengthLogits(this.params, encOut, this.opts.sgLengthPred);
  }

  /** Predicted target lengths (BOS/EOS included), not clamped. */
  predictLengths(encOut: EncoderOut): Int32Array {
    return predictLengths(this.params, encOut, this.opts.sgLengthPred, this.opts.predLengthOffset);
  }

  /** Bidirectional decoder over tokens [B, T] (masked positions hold <unk>) -> features [B, T, C]. */
  decodeFeatures(encOut: EncoderOut, tokens: tf.Tensor2D, training: boolean): tf.Tensor3D {
    const p = this.params;
    const ctx = this.ctx(training);
    const pad = this.dicts.tgt.padIndex;
    return tf.tidy(() => {
      let x = embed(p.get('decoder.embed_tokens.weight') as tf.Tensor2D, tokens, this.decScale); // [B, T, C]
      if (!this.opts.noTokenPositionalEmbeddings) x = tf.add(x, embedPositions(p, 'decoder.embed_positions', tokens, pad));
      x = dropout(x, this.opts.dropout, ctx);
      const selfBias = paddingBias(tf.equal(tokens, pad) as tf.Tensor2D); // keys only: no causal mask
      const cross = { encoderOut: encOut.out, bias: paddingBias(encOut.paddingMask) };
      for (let i = 0; i < this.opts.decoderLayers; i++) x = decoderLayer(p, `decoder.layers.${i}`, x, selfBias, cross, this.dec, ctx);
      return this.opts.decoderNormalizeBefore ? layerNorm(p, 'decoder.layer_norm', x) : x;
    });
  }

  /** Output layer: features [N, C] -> logits [N, V]. */
  outputLogits(features: tf.Tensor2D): tf.Tensor2D {
    return linear(features, this.params.get('decoder.output_projection.weight') as tf.Tensor2D);
  }

  /** One mask-predict pass: tokens [B, T] -> log-probabilities [B, T, V] (inference, no dropout). */
  decodeLogProbs(encOut: EncoderOut, tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.decodeFeatures(encOut, tokens, false);
      const [b, t, c] = h.shape;
      return tf.reshape(tf.logSoftmax(this.outputLogits(tf.reshape(h, [b * t, c]))), [b, t, -1]) as tf.Tensor3D; // [B, T, V]
    });
  }

  /** The decoder input of a training step: `noise` applied to the batch target with `params.rng`. */
  noisedTarget(batch: Batch): Int32Array {
    return injectNoise(batch.target, batch.bsz, batch.tgtLen, this.maskIds, this.params.rng, this.opts.noise);
  }

  /**
   * fairseq's CMLMNATransformerModel.forward as nat_loss terms. batch: translation_lev layout
   * (BOS ... EOS both sides). `prevOutputTokens` [bsz * tgtLen] overrides the noise draw (tests).
   * `word_ins`: logits and targets at the positions whose decoder input is <unk> (only those rows
   * reach the V-wide output layer); `length`: length logits and classes.
   */
  natForward(batch: Batch, training: boolean, prevOutputTokens?: Int32Array): NatLossOutputs {
    const prev = prevOutputTokens ?? this.noisedTarget(batch);
    const { bsz, srcLen, tgtLen } = batch;
    const unk = this.dicts.tgt.unkIndex;
    const rows: number[] = [];
    for (let i = 0; i < prev.length; i++) if (prev[i] === unk) rows.push(i);
    // the batch already knows each side's length (BOS/EOS included)
    const lengthClasses = Int32Array.from(batch.tgtLengths, (t, b) => lengthClass(t, batch.srcLengths[b]!, this.opts.predLengthOffset));
    return tidyObject((): NatLossOutputs => {
      const src = tf.tensor2d(batch.srcTokens, [bsz, srcLen], 'int32');
      const encOut = this.encode(src, training);
      const lengthOut = this.lengthLogits(encOut); // [B, 256]
      const h = this.decodeFeatures(encOut, tf.tensor2d(prev, [bsz, tgtLen], 'int32'), training); // [B, T, C]
      let out: tf.Tensor2D | null = null;
      let tgt: tf.Tensor1D | null = null;
      if (rows.length > 0) {
        const idx = tf.tensor1d(rows, 'int32');
        out = this.outputLogits(tf.gather(tf.reshape(h, [bsz * tgtLen, h.shape[2]]), idx) as tf.Tensor2D); // [N, V]
        tgt = tf.tensor1d(Int32Array.from(rows, (i) => batch.target[i]!), 'int32'); // [N]
      }
      return {
        word_ins: { out, tgt, smoothed: true, factor: 1, nllLoss: true },
        length: { out: lengthOut, tgt: tf.tensor1d(lengthClasses, 'int32'), smoothed: false, factor: this.opts.lengthLossFactor, nllLoss: false },
      };
    });
  }

  dispose(): void {
    this.params.dispose();
  }
}

export const cmlmModelComponent: ModelComponent<CmlmOptions, CmlmModel, ModelDeps> = {
  name: 'cmlm_transformer',
  description: 'CMLM / Mask-Predict: conditional masked language model with length prediction (Ghazvininejad et al., fairseq)',
  prependBos: true,
  options: cmlmOptionTable,
  defaults: cmlmDefaults,
  build: (opts, deps) => new CmlmModel(opts, { src: deps.srcDict, tgt: deps.tgtDict }, deps.seed),
};
