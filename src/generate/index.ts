/**
 * Generator families by model: a model component's name picks how it decodes (fairseq's
 * task.build_generator). Each family declares its flags once; the generate CLI adds them all.
 */
import type { Dictionary } from '../data/dictionary.js';
import { DifformerError } from '../errors.js';
import { readOptions, resolveOptions, type OptionTable } from '../options.js';
import type { TrainableModel } from '../train/types.js';
import {
  buildBeamSearchGenerator,
  generationDefaults,
  generationOptionTable,
  type AutoregressiveModel,
  type GenerationOptions,
  type SequenceGenerator,
} from './generator.js';
import {
  buildDiffusionGenerator,
  diffusionGenerationDefaults,
  diffusionGenerationOptionTable,
  type ArScorer,
  type DiffusionGenerationOptions,
  type DiffusionModel,
} from './diffusion_sampler.js';
import {
  buildMaskPredictGenerator,
  maskPredictGenerationDefaults,
  maskPredictGenerationOptionTable,
  type MaskPredictGenerationOptions,
  type MaskPredictModel,
} from './mask_predict.js';

export interface GeneratorDeps {
  task: { tgtDict: Dictionary; srcDict: Dictionary };
  /** Further models from --path a:b (rerankers). */
  extra: TrainableModel[];
  options: AllGenerationOptions;
  seed: number;
  /** --remove-bpe: how hypotheses become words where a generator compares them (BLEU-MBR). */
  removeBpe?: string;
}

export type AllGenerationOptions = GenerationOptions & DiffusionGenerationOptions & MaskPredictGenerationOptions;

export function generatorOptionTables(): { table: OptionTable<object>; defaults: object }[] {
  return [
    { table: generationOptionTable as OptionTable<object>, defaults: generationDefaults },
    { table: diffusionGenerationOptionTable as OptionTable<object>, defaults: diffusionGenerationDefaults },
    // mask-predict (CMLM); its --retain-iter-history is the diffusion table's flag, declared once
    { table: maskPredictGenerationOptionTable as OptionTable<object>, defaults: maskPredictGenerationDefaults },
  ];
}

export function resolveGeneratorOptions(parsed: Record<string, unknown>): AllGenerationOptions {
  return {
    ...resolveOptions(generationDefaults, readOptions(generationOptionTable, parsed)),
    ...resolveOptions(diffusionGenerationDefaults, readOptions(diffusionGenerationOptionTable, parsed)),
    ...resolveOptions(maskPredictGenerationDefaults, readOptions(maskPredictGenerationOptionTable, parsed)),
  };
}

function isAutoregressive(m: TrainableModel): m is TrainableModel & AutoregressiveModel<unknown, unknown> {
  return (m as Partial<AutoregressiveModel<unknown, unknown>>).generatorFamily === 'autoregressive';
}

function isDiffusion(m: TrainableModel): m is TrainableModel & DiffusionModel {
  return (m as Partial<DiffusionModel>).generatorFamily === 'diffusion';
}

function isMaskPredict(m: TrainableModel): m is TrainableModel & MaskPredictModel {
  return (m as Partial<MaskPredictModel>).generatorFamily === 'mask-predict';
}

function isScorer(m: TrainableModel): m is TrainableModel & ArScorer {
  return typeof (m as Partial<ArScorer>).scoreCandidates === 'function';
}

export function buildGenerator(modelName: string, model: TrainableModel, deps: GeneratorDeps): SequenceGenerator {
  if (isAutoregressive(model)) return buildBeamSearchGenerator(model, deps.task.tgtDict, deps.options);
  if (isDiffusion(model)) {
    const reranker = deps.extra.find(isScorer);
    if (deps.extra.length > 0 && !reranker) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', 'the second model of --path must be an autoregressive Transformer (used to rerank candidates)');
    }
    return buildDiffusionGenerator(model, { tgtDict: deps.task.tgtDict, options: deps.options, seed: deps.seed, reranker, removeBpe: deps.removeBpe });
  }
  if (isMaskPredict(model)) {
    // fairseq: the last model of --path is the reranker, used only with --iter-decode-with-external-reranker
    const reranker = deps.extra.find(isScorer);
    if (deps.extra.length > 0 && (!reranker || !deps.options.iterDecodeWithExternalReranker)) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', 'a second model in --path is only used as an autoregressive reranker: pass --iter-decode-with-external-reranker with --path cmlm.pt:transformer.pt');
    }
    return buildMaskPredictGenerator(model, { tgtDict: deps.task.tgtDict, options: deps.options, seed: deps.seed, reranker, beamLabel: deps.options.beam });
  }
  throw new DifformerError('DIFFORMER_BAD_OPTION', `no generator for model '${modelName}'`);
}
