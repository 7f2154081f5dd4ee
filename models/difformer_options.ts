/**
 * Difformer's options, defaults, named architectures, flag table and option checks (split out of
 * models/difformer.ts to keep each file readable). Flag names are the official code's
 * (zhjgao/difformer `difformer/difformer.py add_args`, fairseq v0.10.2's NAT/Transformer args).
 *
 * Defaults follow the OFFICIAL TRAINING SCRIPTS (scripts/<dataset>/train.sh), not the argparse
 * or `base_architecture` defaults of the code, so a bare `--arch difformer_iwslt_de_en` trains
 * what the README reports:
 *   --self-cond --embed-norm --embed-norm-affine --rescale-timesteps --pred-length-offset
 *   --encoder-learned-pos --decoder-learned-pos --share-all-embeddings --apply-bert-init
 *   --rescaling-factor 4 --noise-schedule sqrt --diffusion-steps 2000 --length-loss-factor 0.1
 * (the code's own base_architecture would give all of these off and the `linear` schedule; every
 * boolean has a --no-x form to get the code's behaviour back).
 *
 * Paper vs code: the paper (section 4.2) puts the layer norm on the word embeddings, LN(e(y));
 * the official default normalises the decoder input AFTER projection + time + positions, so z0 is
 * not normalised. `--embed-norm-before-proj` gives the paper's placement. The paper also says
 * "linear" schedule; the scripts pass `sqrt` (the default here).
 */
import { SCHEDULE_NAMES, type ScheduleName } from '../src/diffusion/schedule.js';
import { DifformerError } from '../src/errors.js';
import type { ActivationFn } from '../src/nn/ffn.js';
import type { DictInfo } from './transformer.js';
import { boolFlag, choiceFlag, floatFlag, intFlag, type OptionTable } from '../src/options.js';

export interface DifformerOptions {
  /** Width of the diffusion space and of the embedding table (--latent-dim). */
  latentDim: number;
  /** Transformer width; the encoder/decoder embed dims are forced to it (--model-dim). */
  modelDim: number;
  encoderFfnEmbedDim: number;
  encoderLayers: number;
  encoderAttentionHeads: number;
  decoderFfnEmbedDim: number;
  decoderLayers: number;
  decoderAttentionHeads: number;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  activationFn: ActivationFn;
  encoderLearnedPos: boolean;
  decoderLearnedPos: boolean;
  /** Embedding scale 1 instead of sqrt(latentDim). */
  noScaleEmbedding: boolean;
  /** One V x latent table for encoder input, diffusion space and logits (joined dictionary). */
  shareAllEmbeddings: boolean;
  /** Tie the encoder's and decoder's latent -> model projections. */
  shareProjectInDim: boolean;
  /** The embedding layer norm ("embed norm"). */
  embedNorm: boolean;
  embedNormAffine: boolean;
  /** Paper placement: LN over the latent embedding (z0 itself normalised). */
  embedNormBeforeProj: boolean;
  selfCond: boolean;
  /** Concatenate [z_t, prev z0hat] in latent space (256 -> 128 -> 128) before projecting. */
  selfCondBeforeProj: boolean;
  /** Feed t * 1000 / T to the network instead of t. */
  rescaleTimesteps: boolean;
  diffusionSteps: number;
  noiseSchedule: ScheduleName;
  /** Noise factor F (--rescaling-factor): z_t = sqrt(ab) z0 + F sqrt(1 - ab) eps in training. */
  rescalingFactor: number;
  /** Variance-preserving rescale of the schedule by F instead of scaling the noise (see model doc). */
  vpRf: boolean;
  /** Length classes are tgt - src + 128 (else absolute tgt length). */
  predLengthOffset: boolean;
  lengthLossFactor: number;
  /** Stop the length loss's gradient at the encoder output. */
  sgLengthPred: boolean;
  /** BERT-style N(0, 0.02) init of the decoder (and so of a shared embedding table). */
  applyBertInit: boolean;
  maxSourcePositions: number;
  maxTargetPositions: number;
}

export interface DifformerDicts {
  src: DictInfo;
  tgt: DictInfo;
}

/** The `difformer` architecture with the official scripts' flags (see the file comment). */
export const difformerDefaults: Readonly<DifformerOptions> = Object.freeze({
  latentDim: 128,
  modelDim: 512,
  encoderFfnEmbedDim: 2048,
  encoderLayers: 6,
  encoderAttentionHeads: 8,
  decoderFfnEmbedDim: 2048,
  decoderLayers: 6,
  decoderAttentionHeads: 8,
  dropout: 0.1,
  attentionDropout: 0,
  activationDropout: 0,
  activationFn: 'relu',
  encoderLearnedPos: true,
  decoderLearnedPos: true,
  noScaleEmbedding: false,
  shareAllEmbeddings: true,
  shareProjectInDim: false,
  embedNorm: true,
  embedNormAffine: true,
  embedNormBeforeProj: false,
  selfCond: true,
  selfCondBeforeProj: false,
  rescaleTimesteps: true,
  diffusionSteps: 2000,
  noiseSchedule: 'sqrt',
  rescalingFactor: 4,
  vpRf: false,
  predLengthOffset: true,
  lengthLossFactor: 0.1,
  sgLengthPred: false,
  applyBertInit: true,
  maxSourcePositions: 1024,
  maxTargetPositions: 1024,
});

function dims(model: number, ffn: number, heads: number): Partial<DifformerOptions> {
  return {
    modelDim: model,
    encoderFfnEmbedDim: ffn,
    encoderAttentionHeads: heads,
    decoderFfnEmbedDim: ffn,
    decoderAttentionHeads: heads,
  };
}

/** Named architectures as partial options over `difformerDefaults` (all 6 + 6 layers, latent 128). */
export const difformerArchitectures: Record<string, Partial<DifformerOptions>> = {
  difformer: {},
  difformer_base: dims(768, 3072, 12),
  difformer_iwslt_de_en: dims(512, 1024, 4),
  // Not official: small enough to train in seconds on a CPU (tests, quickstart).
  difformer_tiny: { ...dims(64, 128, 4), latentDim: 32, encoderLayers: 2, decoderLayers: 2, maxSourcePositions: 256, maxTargetPositions: 256 },
};

/** defaults < named architecture < overrides. */
export function resolveDifformerOptions(arch = 'difformer', overrides: Partial<DifformerOptions> = {}): DifformerOptions {
  const preset = difformerArchitectures[arch];
  if (preset === undefined) {
    throw new DifformerError(
      'DIFFORMER_UNKNOWN_NAME',
      `unknown architecture '${arch}' (--arch); known: ${Object.keys(difformerArchitectures).join(', ')}`,
    );
  }
  return { ...difformerDefaults, ...preset, ...overrides };
}

export const difformerOptionTable: OptionTable<DifformerOptions> = {
  latentDim: intFlag('--latent-dim', 'dimension of z_t and of the embedding table', 'N', 1),
  modelDim: intFlag('--model-dim', 'Transformer width (encoder/decoder embed dim)', 'N', 1),
  encoderFfnEmbedDim: intFlag('--encoder-ffn-embed-dim', 'encoder FFN hidden dim', 'N', 1),
  encoderLayers: intFlag('--encoder-layers', 'number of encoder layers', 'N', 1),
  encoderAttentionHeads: intFlag('--encoder-attention-heads', 'encoder attention heads', 'N', 1),
  decoderFfnEmbedDim: intFlag('--decoder-ffn-embed-dim', 'decoder FFN hidden dim', 'N', 1),
  decoderLayers: intFlag('--decoder-layers', 'number of decoder layers', 'N', 1),
  decoderAttentionHeads: intFlag('--decoder-attention-heads', 'decoder attention heads', 'N', 1),
  dropout: floatFlag('--dropout', 'dropout probability', 'P'),
  attentionDropout: floatFlag('--attention-dropout', 'dropout on attention weights', 'P'),
  activationDropout: floatFlag('--activation-dropout', 'dropout after the FFN activation', 'P'),
  activationFn: choiceFlag('--activation-fn', 'activation function', ['relu', 'gelu'] as const),
  encoderLearnedPos: boolFlag('--encoder-learned-pos', 'learned encoder positions (else sinusoidal)'),
  decoderLearnedPos: boolFlag('--decoder-learned-pos', 'learned decoder positions (else sinusoidal)'),
  noScaleEmbedding: boolFlag('--no-scale-embedding', 'do not scale embeddings by sqrt(latent dim)'),
  shareAllEmbeddings: boolFlag('--share-all-embeddings', 'one embedding table for source, target and logits (joined dictionary)'),
  shareProjectInDim: boolFlag('--share-project-in-dim', 'tie the encoder and decoder latent->model projections'),
  embedNorm: boolFlag('--embed-norm', 'layer norm on the decoder input embeddings'),
  embedNormAffine: boolFlag('--embed-norm-affine', 'elementwise affine parameters in the embedding layer norm'),
  embedNormBeforeProj: boolFlag('--embed-norm-before-proj', "the paper's placement: normalise the latent embeddings (z0) before projection"),
  selfCond: boolFlag('--self-cond', 'self-conditioning on the previous z0 prediction'),
  selfCondBeforeProj: boolFlag('--self-cond-before-proj', 'concatenate self-conditioning inputs in latent space'),
  rescaleTimesteps: boolFlag('--rescale-timesteps', 'feed t*1000/T to the network'),
  diffusionSteps: intFlag('--diffusion-steps', 'diffusion steps T', 'N', 1),
  noiseSchedule: choiceFlag('--noise-schedule', 'noise schedule during training', SCHEDULE_NAMES),
  rescalingFactor: floatFlag('--rescaling-factor', 'noise factor F used in training', 'F'),
  vpRf: boolFlag('--vp-rf', 'variance-preserving rescale of the schedule by F (noise not scaled)'),
  predLengthOffset: boolFlag('--pred-length-offset', 'predict target length minus source length'),
  lengthLossFactor: floatFlag('--length-loss-factor', 'weight of the length loss'),
  sgLengthPred: boolFlag('--sg-length-pred', 'stop gradients from the length loss into the encoder'),
  applyBertInit: boolFlag('--apply-bert-init', 'BERT-style N(0, 0.02) init of the decoder'),
  maxSourcePositions: intFlag('--max-source-positions', 'maximum source length', 'N', 1),
  maxTargetPositions: intFlag('--max-target-positions', 'maximum target length', 'N', 1),
};

function sameDictionary(a: DictInfo, b: DictInfo): boolean {
  if (a === b) return true;
  if (a.size !== b.size || a.padIndex !== b.padIndex || a.eosIndex !== b.eosIndex || a.bosIndex !== b.bosIndex) return false;
  return a.symbols === undefined || b.symbols === undefined || a.symbols.every((s, i) => s === b.symbols?.[i]);
}

/** Throws DIFFORMER_BAD_OPTION naming the flags when options and dictionaries cannot build a model. */
export function checkDifformerOptions(o: DifformerOptions, dicts: DifformerDicts): void {
  if (o.modelDim % o.encoderAttentionHeads !== 0 || o.modelDim % o.decoderAttentionHeads !== 0) {
    throw new DifformerError(
      'DIFFORMER_BAD_OPTION',
      `--model-dim ${o.modelDim} must divide by the attention heads (encoder ${o.encoderAttentionHeads}, decoder ${o.decoderAttentionHeads})`,
    );
  }
  if (!Number.isInteger(o.diffusionSteps) || o.diffusionSteps < 1) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--diffusion-steps must be a positive integer, got ${o.diffusionSteps}`);
  }
  if (!(o.rescalingFactor > 0)) throw new DifformerError('DIFFORMER_BAD_OPTION', `--rescaling-factor must be > 0, got ${o.rescalingFactor}`);
  if (o.shareAllEmbeddings && !sameDictionary(dicts.src, dicts.tgt)) {
    throw new DifformerError(
      'DIFFORMER_BAD_OPTION',
      `--share-all-embeddings requires a joined dictionary (source has ${dicts.src.size} types, target ${dicts.tgt.size}); preprocess with --joined-dictionary or pass --no-share-all-embeddings`,
    );
  }
}
