/**
 * fairseq v0.10.2's autoregressive encoder-decoder Transformer (`models/transformer.py`) as a
 * plain model: named parameters in a ParamStore plus forward functions, batch-first.
 *
 *   encoder: x = scale * E_src[src] + pos(src); dropout; layers; LN if normalize_before
 *   decoder: y = scale * E_tgt[prev] + pos(prev); dropout; causal layers with cross-attention;
 *            LN if normalize_before; logits = y W_outᵀ (W_out = E_tgt when shared; no bias)
 *
 * fairseq conventions: prev_output_tokens = [EOS, y1..yn], target = [y1..yn, EOS];
 * scale = sqrt(embed dim) unless noScaleEmbedding; sinusoidal positions unless *LearnedPos.
 * Parameter names are fairseq's (`encoder.embed_tokens.weight`,
 * `decoder.layers.0.encoder_attn.k_proj.weight`, `decoder.output_projection.weight` when not
 * shared). Tied tables are one variable; the other fairseq names are aliases (`params.aliases()`).
 *
 * Incremental decoding (beam search): `initDecoderState(encOut)` projects each layer's
 * cross-attention keys/values once; `decodeStep(state, tokens)` appends one position and
 * returns log-probabilities; `reorderState(state, beamIndices)` gathers the batch axis. Both
 * consume the state they are given (its tensors are disposed or moved into the result).
 *
 * Left out (fairseq options not needed here): adaptive softmax/input, layerdrop, quant-noise,
 * cross_self_attention, layernorm_embedding, decoder input/output dims that differ from the
 * embed dim, alignment heads, pretrained embedding files.
 */
import * as tf from '@tensorflow/tfjs';
import { DifformerError } from '../src/errors.js';
import { causalBias, paddingBias, projectKeyValue, reorderKeyValue, type KeyValue } from '../src/nn/attention.js';
import { dropout, type ForwardContext } from '../src/nn/dropout.js';
import { embed, initEmbedding } from '../src/nn/embedding.js';
import {
  decoderLayerOptions,
  initEncoder,
  runEncoder,
  transformerEncoderOptions,
  type EncoderOptions,
  type EncoderOut,
} from '../src/nn/encoder.js';
import type { ActivationFn } from '../src/nn/ffn.js';
import { initLayerNorm, layerNorm } from '../src/nn/layer_norm.js';
import { linear } from '../src/nn/linear.js';
import { normal, ParamStore, tidyObject } from '../src/nn/params.js';
import { embedPositionAt, embedPositions, initPositions } from '../src/nn/positions.js';
import { decoderLayer, decoderLayerStep, initDecoderLayer, type DecoderLayerCache, type LayerOptions } from '../src/nn/transformer_layer.js';

export type { EncoderOut };

export interface TransformerOptions {
  encoderEmbedDim: number;
  encoderFfnEmbedDim: number;
  encoderLayers: number;
  encoderAttentionHeads: number;
  encoderNormalizeBefore: boolean;
  encoderLearnedPos: boolean;
  decoderEmbedDim: number;
  decoderFfnEmbedDim: number;
  decoderLayers: number;
  decoderAttentionHeads: number;
  decoderNormalizeBefore: boolean;
  decoderLearnedPos: boolean;
  dropout: number;
  attentionDropout: number;
  /** fairseq --activation-dropout (alias --relu-dropout). */
  activationDropout: number;
  activationFn: ActivationFn;
  /** One table for encoder input, decoder input and output; needs a joined dictionary. */
  shareAllEmbeddings: boolean;
  shareDecoderInputOutputEmbed: boolean;
  noScaleEmbedding: boolean;
  noTokenPositionalEmbeddings: boolean;
  maxSourcePositions: number;
  maxTargetPositions: number;
}

/** fairseq's base_architecture (= `transformer`). */
export const transformerDefaults: Readonly<TransformerOptions> = Object.freeze({
  encoderEmbedDim: 512,
  encoderFfnEmbedDim: 2048,
  encoderLayers: 6,
  encoderAttentionHeads: 8,
  encoderNormalizeBefore: false,
  encoderLearnedPos: false,
  decoderEmbedDim: 512,
  decoderFfnEmbedDim: 2048,
  decoderLayers: 6,
  decoderAttentionHeads: 8,
  decoderNormalizeBefore: false,
  decoderLearnedPos: false,
  dropout: 0.1,
  attentionDropout: 0,
  activationDropout: 0,
  activationFn: 'relu',
  shareAllEmbeddings: false,
  shareDecoderInputOutputEmbed: false,
  noScaleEmbedding: false,
  noTokenPositionalEmbeddings: false,
  maxSourcePositions: 1024,
  maxTargetPositions: 1024,
});

function dims(embed: number, ffn: number, heads: number): Partial<TransformerOptions> {
  return {
    encoderEmbedDim: embed,
    encoderFfnEmbedDim: ffn,
    encoderAttentionHeads: heads,
    decoderEmbedDim: embed,
    decoderFfnEmbedDim: ffn,
    decoderAttentionHeads: heads,
  };
}

/** Named architectures (fairseq's presets) as partial options over `transformerDefaults`. */
export const transformerArchitectures: Record<string, Partial<TransformerOptions>> = {
  transformer: {},
  transformer_wmt_en_de: {},
  transformer_iwslt_de_en: dims(512, 1024, 4),
  transformer_vaswani_wmt_en_de_big: { ...dims(1024, 4096, 16), dropout: 0.3 },
  transformer_vaswani_wmt_en_fr_big: { ...dims(1024, 4096, 16), dropout: 0.1 },
  transformer_wmt_en_de_big: { ...dims(1024, 4096, 16), dropout: 0.3, attentionDropout: 0.1 },
  transformer_wmt_en_de_big_t2t: {
    ...dims(1024, 4096, 16),
    dropout: 0.3,
    attentionDropout: 0.1,
    activationDropout: 0.1,
    encoderNormalizeBefore: true,
    decoderNormalizeBefore: true,
  },
  // Not in fairseq: small enough to train in seconds on a CPU (tests, quickstart).
  transformer_tiny: { ...dims(64, 256, 4), encoderLayers: 2, decoderLayers: 2 },
};

/** defaults < named architecture < overrides. */
export function resolveTransformerOptions(arch = 'transformer', overrides: Partial<TransformerOptions> = {}): TransformerOptions {
  const preset = transformerArchitectures[arch];
  if (preset === undefined) {
    throw new DifformerError(
      'DIFFORMER_UNKNOWN_NAME',
      `unknown architecture '${arch}' (--arch); known: ${Object.keys(transformerArchitectures).join(', ')}`,
    );
  }
  return { ...transformerDefaults, ...preset, ...overrides };
}

/** What the model needs to know about a dictionary (src/data/dictionary.ts's Dictionary fits). */
export interface DictInfo {
  readonly size: number;
  readonly padIndex: number;
  readonly eosIndex: number;
  readonly bosIndex: number;
  readonly symbols?: readonly string[];
}

export interface TransformerDicts {
  src: DictInfo;
  tgt: DictInfo;
}

/** Incremental decoder state; owns its tensors. */
export interface DecoderState {
  /** Number of positions decoded so far. */
  step: number;
  layers: DecoderLayerCache[];
  /** Per-layer cross-attention keys/values. */
  cross: KeyValue[];
  crossBias: tf.Tensor4D; // [B, 1, 1, S]
}

function sameDictionary(a: DictInfo, b: DictInfo): boolean {
  if (a === b) return true;
  if (a.size !== b.size || a.padIndex !== b.padIndex || a.eosIndex !== b.eosIndex || a.bosIndex !== b.bosIndex) return false;
  if (a.symbols === undefined || b.symbols === undefined) return true;
  return a.symbols.every((s, i) => s === b.symbols?.[i]);
}

function checkOptions(o: TransformerOptions, dicts: TransformerDicts): void {
  if (o.encoderEmbedDim % o.encoderAttentionHeads !== 0 || o.decoderEmbedDim % o.decoderAttentionHeads !== 0) {
    throw new DifformerError(
      'DIFFORMER_BAD_OPTION',
      `embed dim must divide by attention heads: encoder ${o.encoderEmbedDim}/${o.encoderAttentionHeads}, decoder ${o.decoderEmbedDim}/${o.decoderAttentionHeads}`,
    );
  }
  if (o.encoderEmbedDim !== o.decoderEmbedDim) {
    // Cross-attention kdim/vdim could differ in fairseq, but its decoder layers assume equal dims.
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--encoder-embed-dim ${o.encoderEmbedDim} must equal --decoder-embed-dim ${o.decoderEmbedDim}`);
  }
  if (o.shareAllEmbeddings && !sameDictionary(dicts.src, dicts.tgt)) {
    throw new DifformerError(
      'DIFFORMER_BAD_OPTION',
      `--share-all-embeddings requires a joined dictionary (source has ${dicts.src.size} types, target ${dicts.tgt.size}); preprocess with --joined-dictionary`,
    );
  }
}

export class TransformerModel {
  readonly params: ParamStore;
  readonly opts: Readonly<TransformerOptions>;
  readonly dicts: TransformerDicts;
  private readonly enc: EncoderOptions;
  private readonly dec: LayerOptions;
  private readonly encScale: number;
  private readonly decScale: number;

  constructor(opts: TransformerOptions, dicts: TransformerDicts, seed = 1) {
    checkOptions(opts, dicts);
    this.opts = Object.freeze({ ...opts, shareDecoderInputOutputEmbed: opts.shareDecoderInputOutputEmbed || opts.shareAllEmbeddings });
    this.dicts = dicts;
    this.enc = transformerEncoderOptions(opts);
    this.dec = decoderLayerOptions(opts);
    this.encScale = opts.noScaleEmbedding ? 1 : Math.sqrt(opts.encoderEmbedDim);
    this.decScale = opts.noScaleEmbedding ? 1 : Math.sqrt(opts.decoderEmbedDim);
    this.params = new ParamStore(seed);
    this.build();
  }

  /** Create parameters in fairseq's module order. */
  private build(): void {
    const o = this.opts;
    const p = this.params;
    const { src, tgt } = this.dicts;
    initEncoder(p, this.enc, src);

    if (o.shareAllEmbeddings) p.alias('decoder.embed_tokens.weight', 'encoder.embed_tokens.weight');
    else initEmbedding(p, 'decoder.embed_tokens.weight', tgt.size, o.decoderEmbedDim, tgt.padIndex);
    if (!o.noTokenPositionalEmbeddings) {
      initPositions(p, 'decoder.embed_positions', {
        maxPositions: o.maxTargetPositions,
        dim: o.decoderEmbedDim,
        padIndex: tgt.padIndex,
        learned: o.decoderLearnedPos,
      });
    }
    for (let i = 0; i < o.decoderLayers; i++) initDecoderLayer(p, `decoder.layers.${i}`, this.dec);
    if (o.decoderNormalizeBefore) initLayerNorm(p, 'decoder.layer_norm', o.decoderEmbedDim);
    if (o.shareDecoderInputOutputEmbed) p.alias('decoder.output_projection.weight', 'decoder.embed_tokens.weight');
    else p.create('decoder.output_projection.weight', [tgt.size, o.decoderEmbedDim], normal(o.decoderEmbedDim ** -0.5));
  }

  private ctx(training: boolean): ForwardContext {
    return { training, rng: this.params.rng };
  }

  /** srcTokens [B, S] int32, right- or left-padded. The caller disposes the result (src/nn/encoder.ts `disposeEncoderOut`). */
  encode(srcTokens: tf.Tensor2D, training: boolean): EncoderOut {
    return runEncoder(this.params, this.enc, srcTokens, this.dicts.src.padIndex, this.ctx(training), this.encScale);
  }

  /** Token + position embeddings of decoder input, scaled, with dropout. [B, T, C]. */
  private embedTarget(tokens: tf.Tensor2D, ctx: ForwardContext, step?: number): tf.Tensor3D {
    const p = this.params;
    let x = embed(p.get('decoder.embed_tokens.weight') as tf.Tensor2D, tokens, this.decScale);
    if (!this.opts.noTokenPositionalEmbeddings) {
      const pad = this.dicts.tgt.padIndex;
      const pos =
        step === undefined
          ? embedPositions(p, 'decoder.embed_positions', tokens, pad)
          : embedPositionAt(p, 'decoder.embed_positions', tokens.shape[0], step, pad);
      x = tf.add(x, pos);
    }
    return dropout(x, this.opts.dropout, ctx);
  }

  /** Final layer norm (pre-LN only) and output projection: [B, T, C] -> logits [B, T, V]. */
  private outputLayer(x: tf.Tensor3D): tf.Tensor3D {
    if (this.opts.decoderNormalizeBefore) x = layerNorm(this.params, 'decoder.layer_norm', x);
    const [b, t, c] = x.shape;
    const w = this.params.get('decoder.output_projection.weight') as tf.Tensor2D; // [V, C]
    return tf.reshape(linear(tf.reshape(x, [b * t, c]), w), [b, t, w.shape[0]]); // [B, T, V]
  }

  /** Teacher-forced decoder: prevOutputTokens [B, T] int32 -> logits [B, T, V]. */
  decode(encOut: EncoderOut, prevOutputTokens: tf.Tensor2D, training: boolean): tf.Tensor3D {
    const p = this.params;
    const ctx = this.ctx(training);
    return tf.tidy(() => {
      const t = prevOutputTokens.shape[1];
      let x = this.embedTarget(prevOutputTokens, ctx);
      // Causal mask plus target padding (a no-op when there is none, as fairseq's "if any pad").
      const selfBias = tf.add(causalBias(t), paddingBias(tf.equal(prevOutputTokens, this.dicts.tgt.padIndex) as tf.Tensor2D));
      const cross = { encoderOut: encOut.out, bias: paddingBias(encOut.paddingMask) };
      for (let i = 0; i < this.opts.decoderLayers; i++) x = decoderLayer(p, `decoder.layers.${i}`, x, selfBias, cross, this.dec, ctx);
      return this.outputLayer(x);
    });
  }

  /** encode + decode: logits [B, T, V]. */
  forward(srcTokens: tf.Tensor2D, prevOutputTokens: tf.Tensor2D, training: boolean): tf.Tensor3D {
    return tf.tidy(() => this.decode(this.encode(srcTokens, training), prevOutputTokens, training));
  }

  /** Start incremental decoding: project each layer's cross-attention keys/values once. */
  initDecoderState(encOut: EncoderOut): DecoderState {
    return tidyObject((): DecoderState => {
      const cross: KeyValue[] = [];
      for (let i = 0; i < this.opts.decoderLayers; i++) {
        cross.push(projectKeyValue(this.params, `decoder.layers.${i}.encoder_attn`, encOut.out, this.dec.attentionHeads));
      }
      const layers = cross.map((): DecoderLayerCache => ({ self: null }));
      return { step: 0, layers, cross, crossBias: paddingBias(encOut.paddingMask) };
    });
  }

  /**
   * Decode one position: tokens [B, 1] int32 is the input at position `state.step` (EOS first).
   * Returns log-probabilities [B, V] for the next token and the next state; consumes `state`.
   */
  decodeStep(state: DecoderState, tokens: tf.Tensor2D): { logProbs: tf.Tensor2D; state: DecoderState } {
    const p = this.params;
    const ctx = this.ctx(false);
    const result = tidyObject(() => {
      let x = this.embedTarget(tokens, ctx, state.step); // [B, 1, C]
      const layers: DecoderLayerCache[] = [];
      for (let i = 0; i < this.opts.decoderLayers; i++) {
        const cross = { kv: state.cross[i]!, bias: state.crossBias };
        const r = decoderLayerStep(p, `decoder.layers.${i}`, x, state.layers[i]!, cross, this.dec, ctx);
        x = r.out;
        layers.push(r.cache);
      }
      const logits = this.outputLayer(x); // [B, 1, V]
      const logProbs = tf.logSoftmax(tf.reshape(logits, [logits.shape[0], logits.shape[2]])) as tf.Tensor2D; // [B, V]
      return { logProbs, layers };
    });
    for (const l of state.layers) if (l.self !== null) tf.dispose([l.self.key, l.self.value]);
    const next: DecoderState = { step: state.step + 1, layers: result.layers, cross: state.cross, crossBias: state.crossBias };
    return { logProbs: result.logProbs, state: next };
  }

  /** Gather the batch axis of every cached tensor by `indices` [B'] int32; consumes `state`. */
  reorderState(state: DecoderState, indices: tf.Tensor1D): DecoderState {
    const next = tidyObject((): DecoderState => ({
      step: state.step,
      layers: state.layers.map((l): DecoderLayerCache => ({ self: l.self === null ? null : reorderKeyValue(l.self, indices) })),
      cross: state.cross.map((kv) => reorderKeyValue(kv, indices)),
      crossBias: tf.gather(state.crossBias, indices, 0),
    }));
    disposeDecoderState(state);
    return next;
  }

  dispose(): void {
    this.params.dispose();
  }
}

export function disposeDecoderState(state: DecoderState): void {
  for (const l of state.layers) if (l.self !== null) tf.dispose([l.self.key, l.self.value]);
  for (const kv of state.cross) tf.dispose([kv.key, kv.value]);
  state.crossBias.dispose();
}
