/**
 * Helpers the compute subcommands share: the first pass over argv, backend start-up, the
 * decoding subcommands' common start, model position limits and loading a checkpoint's model.
 */
import { Command } from 'commander';
import { getLogger } from '../log.js';
import { addOptions, commonDefaults, commonOptionTable, type OptionTable } from '../options.js';
import { getArchitecture, getTask, loadUserDir } from '../registry.js';
import { checkDictionaries, loadCheckpoint, loadWeights, type LoadedCheckpoint } from '../train/checkpoint.js';
import type { ModelDeps, TrainableModel } from '../train/types.js';
import type { Task } from '../task.js';
import { generatorOptionTables } from '../generate/index.js';
import { registerBuiltins } from './builtins.js';
import type { CommonOptions } from '../options.js';

export type { ModelDeps } from '../train/types.js';

/**
 * Reads `--name value` or `--name=value` from raw argv (the first pass). The last occurrence
 * wins, as in commander's full parse, so both passes agree.
 */
export function prescan(argv: string[], names: string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    for (const n of names) {
      if (a === n) found = argv[i + 1];
      else if (a.startsWith(`${n}=`)) found = a.slice(n.length + 1);
    }
  }
  return found;
}

/** Brings up the tfjs backend from the common flags (initBackend logs what it got and why). */
export async function startBackend(common: CommonOptions): Promise<string> {
  const log = getLogger();
  const { initBackend } = await import('../backend.js');
  const backend = await initBackend({
    backend: common.backend,
    threads: common.threads > 0 ? common.threads : undefined,
    wasmThreads: common.wasmThreads,
    log: (msg, fields) => log.info(fields ?? {}, msg),
  });
  return backend.name;
}


/**
 * A subcommand that decodes with a checkpoint (generate, distill): its own table, the common
 * flags and every generator family's flags, after loading a --user-dir plugin.
 */
export async function decodingCommand<O extends object>(
  argv: string[],
  name: string,
  description: string,
  dataHelp: string,
  table: OptionTable<O>,
  defaults: Readonly<O>,
  run: (data: string, parsed: Record<string, unknown>) => Promise<unknown>,
): Promise<Command> {
  registerBuiltins();
  const userDir = prescan(argv, ['--user-dir']);
  if (userDir) await loadUserDir(userDir);
  const cmd = new Command(name).description(description).argument('<data>', dataHelp);
  addOptions(cmd, table, defaults);
  addOptions(cmd, commonOptionTable, commonDefaults);
  for (const t of generatorOptionTables()) addOptions(cmd, t.table, t.defaults);
  cmd.action(async (data: string, _o: unknown, self: Command) => {
    await run(data, self.opts());
  });
  return cmd;
}

/**
 * The longest source and target a model has positions for (Infinity where its options name
 * none), read from its stored or resolved options: fairseq's model.max_positions().
 */
export function modelPositionLimits(modelOptions: object): { maxSourcePositions: number; maxTargetPositions: number } {
  const o = modelOptions as { maxSourcePositions?: unknown; maxTargetPositions?: unknown };
  const limit = (v: unknown) => (typeof v === 'number' && v > 0 ? v : Infinity);
  return { maxSourcePositions: limit(o.maxSourcePositions), maxTargetPositions: limit(o.maxTargetPositions) };
}

export interface LoadedModel {
  ckpt: LoadedCheckpoint;
  model: TrainableModel;
  task: Task;
}

/**
 * A checkpoint's task set up on DATA (its dictionaries checked against the checkpoint's) and
 * its model with the weights loaded. `taskOverrides` replaces stored task options (languages).
 */
export async function loadCheckpointModel(path: string, data: string, seed: number, taskOverrides: Record<string, unknown> = {}): Promise<LoadedModel> {
  const ckpt = loadCheckpoint(path);
  const cfg = ckpt.meta.config;
  const task = await getTask(cfg.task.name).setup({ ...cfg.task.options, ...taskOverrides }, data);
  checkDictionaries(ckpt, task.srcDict, task.tgtDict);
  const { model: modelC } = getArchitecture<object, TrainableModel, ModelDeps>(cfg.model.arch);
  const model = modelC.build(cfg.model.options, { srcDict: task.srcDict, tgtDict: task.tgtDict, seed });
  loadWeights(model.params, ckpt.weights);
  return { ckpt, model, task };
}
