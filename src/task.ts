/**
 * What the subcommands ask of a task (the part of fairseq's FairseqTask that train, generate,
 * distill and score use): the language pair and its dictionaries, the data-bin's splits and how
 * they are read, and the metric generation reports. tasks/translation.ts implements it; a
 * --user-dir task's setup() returns one.
 */
import type { Dictionary } from './data/dictionary.js';
import type { LanguagePairDataset, LanguagePairOptions } from './data/language_pair_dataset.js';

export type TaskMetric = 'bleu' | 'rouge';

/** The task options the subcommands read back (position limits; see tasks/translation.ts). */
export interface TaskPositionOptions {
  maxSourcePositions: number;
  maxTargetPositions: number;
}

export interface Task {
  readonly name: string;
  readonly dataDir: string;
  readonly sourceLang: string;
  readonly targetLang: string;
  readonly srcDict: Dictionary;
  readonly tgtDict: Dictionary;
  /** What generate and --eval-bleu report: BLEU, or ROUGE-1/2/L before it. */
  readonly metric: TaskMetric;
  readonly opts: Readonly<TaskPositionOptions>;
  /** The data-bin's SentencePiece model, if preprocess wrote one. */
  readonly spmModelPath: string | undefined;
  hasSplit(split: string): boolean;
  /** The path prefix of a split's files (`<dir>/<split>.<src>-<tgt>.`), undefined when absent. */
  splitPrefix(split: string): string | undefined;
  /** How every split is read (also raw input in interactive generation). */
  datasetOptions(): LanguagePairOptions;
  loadDataset(split: string): LanguagePairDataset;
}
