/**
 * The `translation` and `summarization` tasks (fairseq's tasks/translation.py): load the
 * dictionaries and splits of a data-bin made by difformer-preprocess (or fairseq-preprocess).
 * Summarization (tasks/summarization.ts) is the same loading with ROUGE as its metric.
 * Languages are inferred from the data-bin's file names when not given.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Dictionary } from '../src/data/dictionary.js';
import { IndexedDataset } from '../src/data/indexed_dataset.js';
import { LanguagePairDataset, type LanguagePairOptions } from '../src/data/language_pair_dataset.js';
import { readTextFile } from '../src/data/text.js';
import { DifformerError } from '../src/errors.js';
import { boolFlag, intFlag, optionalStringFlag, type OptionTable } from '../src/options.js';
import type { TaskComponent } from '../src/registry.js';
import type { Task, TaskMetric } from '../src/task.js';

export type { TaskMetric };

export interface TranslationOptions {
  sourceLang: string | undefined;
  targetLang: string | undefined;
  maxSourcePositions: number;
  maxTargetPositions: number;
  /** Cut sources longer than maxSourcePositions (fairseq's --truncate-source) instead of skipping them. */
  truncateSource: boolean;
  /** Prepend BOS to both sides (fairseq's translation_lev; NAT models and Difformer set it). */
  prependBos: boolean;
}

export const translationDefaults: Readonly<TranslationOptions> = Object.freeze({
  sourceLang: undefined,
  targetLang: undefined,
  maxSourcePositions: 1024,
  maxTargetPositions: 1024,
  truncateSource: false,
  prependBos: false,
});

export const translationOptionTable: OptionTable<TranslationOptions> = {
  sourceLang: { ...optionalStringFlag('--source-lang', 'source language (inferred from the data-bin if omitted)', 'SRC'), short: '-s' },
  targetLang: { ...optionalStringFlag('--target-lang', 'target language (inferred from the data-bin if omitted)', 'TGT'), short: '-t' },
  maxSourcePositions: intFlag('--max-source-positions', 'max number of tokens in the source sequence', 'N', 1),
  maxTargetPositions: intFlag('--max-target-positions', 'max number of tokens in the target sequence', 'N', 1),
  truncateSource: boolFlag('--truncate-source', 'cut sources to --max-source-positions (kept in the checkpoint: generate cuts them the same way)'),
  prependBos: null,
};

export class TranslationTask implements Task {
  readonly srcDict: Dictionary;
  readonly tgtDict: Dictionary;
  private readonly cache = new Map<string, LanguagePairDataset>();

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly sourceLang: string,
    readonly targetLang: string,
    readonly opts: TranslationOptions,
    readonly metric: TaskMetric,
  ) {
    this.srcDict = loadDictionary(join(dataDir, `dict.${sourceLang}.txt`));
    this.tgtDict = loadDictionary(join(dataDir, `dict.${targetLang}.txt`));
    for (const k of ['padIndex', 'eosIndex', 'unkIndex', 'bosIndex'] as const) {
      if (this.srcDict[k] !== this.tgtDict[k]) throw new DifformerError('DIFFORMER_BAD_DICTIONARY', `source and target dictionaries disagree on ${k}`);
    }
  }

  get joinedDictionary(): boolean {
    return this.srcDict.size === this.tgtDict.size && this.srcDict.hash() === this.tgtDict.hash();
  }

  /** The SentencePiece model of the data-bin, if preprocess wrote one. */
  get spmModelPath(): string | undefined {
    const p = join(this.dataDir, 'spm.model');
    return existsSync(p) ? p : undefined;
  }

  hasSplit(split: string): boolean {
    return this.splitPrefix(split) !== undefined;
  }

  /** `<split>.<src>-<tgt>.` or, as fairseq, the reversed pair's files (a de-en bin read en->de). */
  splitPrefix(split: string): string | undefined {
    const { sourceLang: s, targetLang: t } = this;
    return [`${split}.${s}-${t}.`, `${split}.${t}-${s}.`].map((p) => join(this.dataDir, p)).find((p) => existsSync(`${p}${s}.idx`));
  }

  /** How every split is read (also raw input in interactive generation). */
  datasetOptions(): LanguagePairOptions {
    const { prependBos, truncateSource, maxSourcePositions } = this.opts;
    // stored checkpoints of older versions lack truncateSource: undefined reads as off
    return { prependBos, truncateSourceTo: truncateSource ? maxSourcePositions : undefined };
  }

  loadDataset(split: string): LanguagePairDataset {
    const cached = this.cache.get(split);
    if (cached) return cached;
    const prefix = this.splitPrefix(split);
    if (prefix === undefined) {
      const have = splitsIn(this.dataDir, this.sourceLang, this.targetLang);
      const expected = join(this.dataDir, `${split}.${this.sourceLang}-${this.targetLang}.${this.sourceLang}.idx`);
      throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `split '${split}' not found in ${this.dataDir} (expected ${expected}); available: ${have.join(', ') || 'none'}`);
    }
    const src = new IndexedDataset(`${prefix}${this.sourceLang}`);
    const tgt = existsSync(`${prefix}${this.targetLang}.idx`) ? new IndexedDataset(`${prefix}${this.targetLang}`) : undefined;
    if (tgt && tgt.length !== src.length) {
      throw new DifformerError('DIFFORMER_BAD_DATA', `${split}: source has ${src.length} sentences, target ${tgt.length}`);
    }
    const ds = new LanguagePairDataset(src, tgt, this.srcDict, this.tgtDict, this.datasetOptions());
    this.cache.set(split, ds);
    return ds;
  }
}

function loadDictionary(path: string): Dictionary {
  if (!existsSync(path)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `dictionary not found: ${path} (is this a data-bin made by difformer-preprocess?)`);
  return Dictionary.fromText(readTextFile(path), path);
}

function splitsIn(dir: string, src: string, tgt: string): string[] {
  const suffixes = [`.${src}-${tgt}.${src}.idx`, `.${tgt}-${src}.${src}.idx`];
  return readdirSync(dir).flatMap((f) => suffixes.filter((x) => f.endsWith(x)).map((x) => f.slice(0, -x.length)));
}

/** Finds (src, tgt) from `<split>.<src>-<tgt>.<lang>.idx` names, as fairseq's infer_language_pair. */
export function inferLanguagePair(dir: string): [string, string] {
  if (!existsSync(dir)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `data directory not found: ${dir}`);
  for (const f of readdirSync(dir).sort()) {
    const m = /^[^.]+\.([^.-]+)-([^.-]+)\.[^.]+\.idx$/.exec(f);
    if (m) return [m[1]!, m[2]!];
  }
  throw new DifformerError('DIFFORMER_BAD_DATA', `could not infer the language pair in ${dir}: no <split>.<src>-<tgt>.<lang>.idx files; pass --source-lang and --target-lang`);
}

export function makeTranslationLikeTask(name: string, description: string, metric: TaskMetric): TaskComponent<TranslationOptions, TranslationTask> {
  return {
    name,
    description,
    options: translationOptionTable,
    defaults: translationDefaults,
    async setup(opts, dataDir) {
      let { sourceLang, targetLang } = opts;
      if (!sourceLang || !targetLang) [sourceLang, targetLang] = inferLanguagePair(dataDir);
      return new TranslationTask(name, dataDir, sourceLang, targetLang, opts, metric);
    },
  };
}

export const translationTask = makeTranslationLikeTask('translation', 'translate from one (natural) language to another', 'bleu');
