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

export interface GeneratorDeps {
  task: { tgtDict: Dictionary; srcDict: Dictionary };
  /** Further models from --path a:b (rerankers). */
  extra: TrainableModel[];
  options: AllGenerationOptions;
  seed: number;
}

export type AllGenerationOptions = GenerationOptions;

export function generatorOptionTables(): { table: OptionTable<object>; defaults: object }[] {
  return [{ table: generationOptionTable as OptionTable<object>, defaults: generationDefaults }];
}

export function resolveGeneratorOptions(parsed: Record<string, unknown>): AllGenerationOptions {
  return resolveOptions(generationDefaults, readOptions(generationOptionTable, parsed));
}

function isAutoregressive(m: TrainableModel): m is TrainableModel & AutoregressiveModel<unknown, unknown> {
  return (m as Partial<AutoregressiveModel<unknown, unknown>>).generatorFamily === 'autoregressive';
}

export function buildGenerator(modelName: string, model: TrainableModel, deps: GeneratorDeps): SequenceGenerator {
  if (isAutoregressive(model)) return buildBeamSearchGenerator(model, deps.task.tgtDict, deps.options);
  throw new DifformerError('DIFFORMER_BAD_OPTION', `no generator for model '${modelName}'`);
}
