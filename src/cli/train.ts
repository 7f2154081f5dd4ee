/**
 * difformer-train DATA: fairseq-train's pipeline (fairseq_cli/train.py, v0.10.2):
 *   1. seed and backend      2. task: dictionaries and splits    3. model from --arch + flags
 *   4. criterion             5. log names and parameter counts   6. trainer; resume
 *   7. the loop (src/train/trainer.ts)
 * Flags are two-pass as in fairseq: --task/--arch/--criterion/--user-dir are read first, then
 * the chosen components' own option tables are added, so `--help` lists them too.
 */
import { Command } from 'commander';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
import { addOptions, boolFlag, intFlag, readOptions, stringFlag, resolveOptions, commonDefaults, commonOptionTable, type CommonOptions, type OptionTable } from '../options.js';
import { generatorOptionTables, resolveGeneratorOptions, buildGenerator } from '../generate/index.js';
import { fairseqBleu, fairseqBleuScore as bleuScore, rougeScores, sacreBleuCorpus } from '../metrics/index.js';
import { modelPositionLimits, prescan, startBackend, type ModelDeps } from './shared.js';
import { postProcess } from '../data/post_process.js';
export type { ModelDeps };
import type { LanguagePairDataset } from '../data/language_pair_dataset.js';
import { getArchitecture, getCriterion, getTask, loadUserDir } from '../registry.js';
import type { Task } from '../task.js';
import type { Criterion, TrainableModel } from '../train/types.js';
import { trainingDefaults, trainingOptionTable } from '../train/trainer_options.js';
import { registerBuiltins } from './builtins.js';
import { applyEmbeddingOptions, embeddingInitDefaults, embeddingInitOptionTable } from '../train/init_embeddings.js';
import { lengthClassFits } from '../nn/length_head.js';

/** Validation by decoding (fairseq's --eval-bleu of the translation task). */
export interface EvalOptions {
  evalBleu: boolean;
  evalTokenizedBleu: boolean;
  evalBleuMaxSentences: number;
}

export const evalDefaults: Readonly<EvalOptions> = Object.freeze({ evalBleu: false, evalTokenizedBleu: false, evalBleuMaxSentences: 0 });

export const evalOptionTable: OptionTable<EvalOptions> = {
  evalBleu: boolFlag('--eval-bleu', 'decode the valid set at each validation and report BLEU (and ROUGE for summarization); generation flags (--beam, --lenpen, ...) apply'),
  evalTokenizedBleu: boolFlag('--eval-tokenized-bleu', 'BLEU on whitespace tokens instead of sacreBLEU 13a'),
  evalBleuMaxSentences: intFlag('--eval-bleu-max-sentences', 'decode at most N valid sentences for --eval-bleu (0 = all)', 'N', 0),
};

export interface ComponentChoice {
  task: string;
  arch: string;
  criterion: string;
}

const componentDefaults: Readonly<ComponentChoice> = Object.freeze({ task: 'translation', arch: 'transformer_tiny', criterion: 'label_smoothed_cross_entropy' });
// read by the first pass over argv (they decide which other flags exist), shown in --help
const componentTable: OptionTable<ComponentChoice> = {
  task: stringFlag('--task', 'task', 'NAME'),
  arch: { ...stringFlag('--arch', 'model architecture', 'NAME'), short: '-a' },
  criterion: stringFlag('--criterion', 'training criterion', 'NAME'),
};

/** Loads --user-dir and reads --task/--arch/--criterion before the full parse: they decide which other flags exist. */
async function firstPass(argv: string[]): Promise<ComponentChoice> {
  const userDir = prescan(argv, ['--user-dir']);
  registerBuiltins();
  if (userDir) await loadUserDir(userDir);
  const given = (k: keyof ComponentChoice): string | undefined => {
    const spec = componentTable[k]!; // all three are flags
    return prescan(argv, spec.short ? [spec.flag, spec.short] : [spec.flag]);
  };
  return { task: given('task') ?? componentDefaults.task, arch: given('arch') ?? componentDefaults.arch, criterion: given('criterion') ?? componentDefaults.criterion };
}

export async function buildTrainCommand(argv: string[]): Promise<Command> {
  const choice = await firstPass(argv);
  const cmd = new Command('train').description('train a model on a data-bin (fairseq-train)').argument('<data>', 'data-bin directory made by difformer-preprocess');
  addOptions(cmd, componentTable, componentDefaults);
  addOptions(cmd, commonOptionTable, commonDefaults);
  addOptions(cmd, trainingOptionTable, trainingDefaults);
  addOptions(cmd, evalOptionTable, evalDefaults);
  addOptions(cmd, embeddingInitOptionTable, embeddingInitDefaults); // --init-embeddings, --freeze-embeddings
  for (const t of generatorOptionTables()) addOptions(cmd, t.table, t.defaults);
  // The chosen components' own flags; unknown names surface as a clear error when run.
  const parts = safeComponents(choice);
  if (parts.task) addOptions(cmd, parts.task.options, parts.task.defaults);
  if (parts.arch) addOptions(cmd, parts.arch.model.options, { ...parts.arch.model.defaults, ...parts.arch.preset });
  if (parts.criterion) addOptions(cmd, parts.criterion.options, parts.criterion.defaults);
  cmd.action(async (data: string, _o: unknown, self: Command) => {
    await runTrain(data, choice, self.opts());
  });
  return cmd;
}

function safeComponents(choice: ComponentChoice) {
  const attempt = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch {
      return undefined;
    }
  };
  return {
    task: attempt(() => getTask(choice.task)),
    arch: attempt(() => getArchitecture(choice.arch)),
    criterion: attempt(() => getCriterion(choice.criterion)),
  };
}

export async function runTrain(data: string, choice: ComponentChoice, parsed: Record<string, unknown>): Promise<void> {
  const log = getLogger();
  const common: CommonOptions = resolveOptions(commonDefaults, readOptions(commonOptionTable, parsed));
  const training = resolveOptions(trainingDefaults, { seed: common.seed }, readOptions(trainingOptionTable, parsed));

  // 1. components (unknown names fail here, listing the known ones), seed and backend
  const taskC = getTask(choice.task);
  const { model: modelC, preset } = getArchitecture<object, TrainableModel, ModelDeps>(choice.arch);
  const critC = getCriterion<object, Criterion>(choice.criterion);
  await startBackend(common);

  // 2. task: dictionaries and splits
  const modelOpts = resolveOptions(modelC.defaults, preset, readOptions(modelC.options, parsed));
  const taskOpts = limitPositions(resolveOptions(taskC.defaults, readOptions(taskC.options, parsed), modelC.prependBos ? { prependBos: true } : {}), modelOpts);
  const task = await taskC.setup(taskOpts, data);
  const train = task.loadDataset(training.trainSubset);
  // as fairseq, a missing valid split is an error (a typo in --valid-subset must not turn validation off unseen)
  if (!training.disableValidation && !task.hasSplit(training.validSubset)) {
    throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `no '${training.validSubset}' split in ${data} (--valid-subset): preprocess one with --validpref, or train without validation (--disable-validation)`);
  }
  const valid = training.disableValidation ? undefined : task.loadDataset(training.validSubset);
  if (valid && !valid.tgt) {
    throw new DifformerError('DIFFORMER_BAD_DATA', `the '${training.validSubset}' split of ${data} has no targets (preprocessed with --only-source): validation needs them; give --disable-validation or another --valid-subset`);
  }
  log.info({ task: choice.task, src: task.sourceLang, tgt: task.targetLang, srcDict: task.srcDict.size, tgtDict: task.tgtDict.size, train: train.length, valid: valid?.length ?? 0 }, `[${task.sourceLang}] dictionary: ${task.srcDict.size} types, [${task.targetLang}] dictionary: ${task.tgtDict.size} types`);

  warnLengthClasses(train, taskOpts, modelOpts);

  // 3. model, 4. criterion
  const model = modelC.build(modelOpts, { srcDict: task.srcDict, tgtDict: task.tgtDict, seed: training.seed });
  // 3b. pretrained / frozen token embeddings (src/train/init_embeddings.ts); a resumed run's
  // checkpoint overwrites the initial values, the frozen flags stay
  const embOpts = resolveOptions(embeddingInitDefaults, readOptions(embeddingInitOptionTable, parsed));
  await applyEmbeddingOptions(model.params, embOpts, { src: task.srcDict, tgt: task.tgtDict });
  const critOpts = resolveOptions(critC.defaults, readOptions(critC.options, parsed));
  const criterion: Criterion = critC.build(critOpts);
  criterion.check(model);

  // 5. names and parameter counts
  log.info({ arch: choice.arch, model: modelC.name, criterion: criterion.name, params: model.params.numParams(), trainable: model.params.numParams({ trainableOnly: true }) }, `model ${choice.arch}, criterion ${criterion.name}, num. model params: ${model.params.numParams()} (num. trained: ${model.params.numParams({ trainableOnly: true })})`);
  log.info({ model: modelOpts, criterion: critOpts, training }, 'resolved options');

  const evalOpts = resolveOptions(evalDefaults, readOptions(evalOptionTable, parsed));
  const evaluate =
    evalOpts.evalBleu && valid
      ? (m: TrainableModel) => Promise.resolve(decodeAndScore(m, modelC.name, task, valid, evalOpts, parsed, training.seed))
      : undefined;

  // 6. trainer and resume, 7. loop
  const { Trainer } = await import('../train/trainer.js');
  const trainer = new Trainer(training, {
    model,
    criterion,
    train,
    valid,
    dicts: { src: task.srcDict, tgt: task.tgtDict },
    config: {
      task: { name: choice.task, options: taskOpts },
      model: { name: modelC.name, arch: choice.arch, options: modelOpts },
      criterion: { name: criterion.name, options: critOpts },
      training,
    },
    log,
    evaluate,
    maxSourcePositions: (taskOpts as { maxSourcePositions?: number }).maxSourcePositions ?? 1024,
    maxTargetPositions: (taskOpts as { maxTargetPositions?: number }).maxTargetPositions ?? 1024,
  });
  log.info({ batches: trainer.batchesPerEpoch, maxTokens: training.maxTokens, batchSize: training.batchSize }, `${trainer.batchesPerEpoch} batches per epoch`);
  trainer.restore();
  await trainer.train();
  model.dispose();
}

/**
 * fairseq's resolve_max_positions: the task keeps (or, with --truncate-source, cuts to) no longer
 * sentences than the model has positions for, so an arch with 256 positions and the task's default
 * 1024 skips long pairs instead of failing on them. The limit is stored with the task options.
 */
function limitPositions<T extends object>(taskOpts: T, modelOpts: object): T {
  const t = { ...taskOpts } as Record<string, unknown>;
  const m = modelPositionLimits(modelOpts);
  for (const k of ['maxSourcePositions', 'maxTargetPositions'] as const) {
    if (typeof t[k] === 'number' && m[k] < (t[k] as number)) t[k] = m[k];
  }
  return t as T;
}

/**
 * Models with fairseq's NAT length head (CMLM, Difformer, Diff-LM) name a length among 256
 * classes: tgt - src + 128 with --pred-length-offset, else tgt. Pairs outside are clamped in
 * training and never predicted right; summaries of long documents fall outside the offset form.
 */
function warnLengthClasses(train: LanguagePairDataset, taskOpts: object, modelOpts: object): void {
  const offset = (modelOpts as { predLengthOffset?: unknown }).predLengthOffset;
  if (typeof offset !== 'boolean' || !train.tgt) return;
  // the pairs training will see (the task's limits are the model's by now)
  const limits = { maxTokens: undefined, batchSize: undefined, requiredBatchSizeMultiple: 1, ...modelPositionLimits(taskOpts) };
  const { kept } = train.validIndices(limits, true);
  let out = 0;
  for (const i of kept) if (!lengthClassFits(train.tgtSize(i), train.srcSize(i), offset)) out++;
  const share = out / Math.max(1, kept.length);
  if (share <= 0.01) return;
  const hint = offset
    ? 'target minus source length outside -128..127; --no-pred-length-offset predicts the target length itself (< 256)'
    : 'target length of 256 or more; --pred-length-offset predicts target minus source length';
  getLogger().warn({ pairs: out, share }, `${(100 * share).toFixed(1)}% of the training pairs (${out}) have a length the length head cannot predict (${hint})`);
}

/** Decodes (part of) the valid set and scores it: bleu, plus rouge1/2/L for summarization. */
export function decodeAndScore(
  model: TrainableModel,
  modelName: string,
  task: Task,
  valid: LanguagePairDataset,
  opts: EvalOptions,
  parsed: Record<string, unknown>,
  seed: number,
): Record<string, number> {
  const kind = task.spmModelPath ? 'sentencepiece' : undefined;
  const gen = buildGenerator(modelName, model, { task, extra: [], options: resolveGeneratorOptions(parsed), seed, removeBpe: kind });
  const n = opts.evalBleuMaxSentences > 0 ? Math.min(opts.evalBleuMaxSentences, valid.length) : valid.length;
  const hyps: string[] = [];
  const refs: string[] = [];
  const idx = Array.from({ length: n }, (_, i) => i);
  for (const b of valid.batches(idx, { maxTokens: undefined, batchSize: 64, requiredBatchSizeMultiple: 1, maxSourcePositions: Infinity, maxTargetPositions: Infinity })) {
    const batch = valid.collate(b);
    const out = gen.generate(batch);
    for (let i = 0; i < batch.bsz; i++) {
      hyps.push(postProcess(task.tgtDict.string(out[i]![0]?.tokens ?? []), kind));
      refs.push(postProcess(task.tgtDict.string(batch.target.subarray(i * batch.tgtLen, (i + 1) * batch.tgtLen), { escapeUnk: true }), kind));
    }
  }
  const bleu = opts.evalTokenizedBleu ? fairseqBleu(hyps, refs) : undefined;
  const scores: Record<string, number> = {
    bleu: bleu ? bleuScore(bleu) : sacreBleuCorpus(hyps, [refs], { tokenize: '13a' }).score,
  };
  if (task.metric === 'rouge') {
    const r = rougeScores(hyps, refs);
    scores.rouge1 = 100 * r.rouge1.fmeasure;
    scores.rouge2 = 100 * r.rouge2.fmeasure;
    scores.rougeL = 100 * r.rougeL.fmeasure;
  }
  return scores;
}
