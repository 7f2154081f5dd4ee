/**
 * The plugin registry (after fairseq's register_task / register_model /
 * register_model_architecture / register_criterion). Built-ins are registered explicitly by
 * `src/cli/builtins.ts`; a `--user-dir` plugin registers more through the same functions. This is
 * the one deliberate global, resettable in tests. Duplicates, architectures of unknown models and
 * unknown lookups throw, listing the known names.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DifformerError } from './errors.js';
import type { OptionTable } from './options.js';
import type { Task } from './task.js';

/** What every registered component declares: its options, once, with their defaults. */
export interface Component<O extends object> {
  readonly name: string;
  readonly description: string;
  readonly options: OptionTable<O>;
  readonly defaults: Readonly<O>;
}

/** A task builds itself from its options (dictionaries, datasets); see src/task.ts and tasks/. */
export interface TaskComponent<O extends object, T extends Task = Task> extends Component<O> {
  setup(opts: O, dataDir: string): Promise<T>;
}

/** A model component: named architectures are partial option objects (fairseq's arch presets). */
export interface ModelComponent<O extends object, M = unknown, D = unknown> extends Component<O> {
  /** The model reads pairs with BOS prepended to both sides (fairseq's translation_lev). */
  readonly prependBos?: boolean;
  build(opts: O, deps: D): M;
}

export interface CriterionComponent<O extends object, C = unknown> extends Component<O> {
  build(opts: O): C;
}

type AnyTask = TaskComponent<object>;
type AnyModel = ModelComponent<object>;
type AnyCriterion = CriterionComponent<object>;

interface Architecture {
  readonly model: string;
  readonly preset: Readonly<Record<string, unknown>>;
}

const tasks = new Map<string, AnyTask>();
const models = new Map<string, AnyModel>();
const architectures = new Map<string, Architecture>();
const criterions = new Map<string, AnyCriterion>();

function addUnique<V>(map: Map<string, V>, kind: string, name: string, value: V): void {
  if (map.has(name)) throw new DifformerError('DIFFORMER_DUPLICATE_NAME', `cannot register ${kind} '${name}': already registered`);
  map.set(name, value);
}

function lookup<V>(map: Map<string, V>, kind: string, flag: string, name: string): V {
  const v = map.get(name);
  if (v === undefined) {
    const known = [...map.keys()].sort().join(', ');
    throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `unknown ${kind} '${name}' (${flag}); known: ${known || '(none)'}`);
  }
  return v;
}

export function registerTask<O extends object, T extends Task>(c: TaskComponent<O, T>): void {
  addUnique(tasks, 'task', c.name, c as unknown as AnyTask);
}

export function registerModel<O extends object, M, D>(c: ModelComponent<O, M, D>): void {
  addUnique(models, 'model', c.name, c as unknown as AnyModel);
}

/** A named architecture of a registered model: a partial options object, no mutation. */
export function registerArchitecture<O extends object>(model: string, arch: string, preset: Partial<O>): void {
  if (!models.has(model)) {
    throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `cannot register architecture '${arch}': unknown model '${model}'`);
  }
  addUnique(architectures, 'architecture', arch, { model, preset: Object.freeze({ ...preset }) });
}

export function registerCriterion<O extends object, C>(c: CriterionComponent<O, C>): void {
  addUnique(criterions, 'criterion', c.name, c as unknown as AnyCriterion);
}

export function getTask(name: string): TaskComponent<object> {
  return lookup(tasks, 'task', '--task', name);
}

export function getCriterion<O extends object = object, C = unknown>(name: string): CriterionComponent<O, C> {
  return lookup(criterions, 'criterion', '--criterion', name) as unknown as CriterionComponent<O, C>;
}

/** Resolves `--arch` to its model component and preset. */
export function getArchitecture<O extends object = object, M = unknown, D = unknown>(
  arch: string,
): { model: ModelComponent<O, M, D>; preset: Partial<O> } {
  const a = lookup(architectures, 'architecture', '--arch', arch);
  return { model: lookup(models, 'model', '--arch', a.model) as unknown as ModelComponent<O, M, D>, preset: a.preset as Partial<O> };
}

export function knownNames(): { tasks: string[]; models: string[]; architectures: string[]; criterions: string[] } {
  const sorted = (m: Map<string, unknown>) => [...m.keys()].sort();
  return { tasks: sorted(tasks), models: sorted(models), architectures: sorted(architectures), criterions: sorted(criterions) };
}

/** Absolute paths of the plugins loaded so far: loading one twice registers nothing twice. */
const loadedUserDirs = new Set<string>();

/**
 * For tests: forget everything, built-ins and loaded --user-dir plugins included. A plugin that
 * registers as a side effect of its import does not register again (Node caches the module).
 */
export function resetRegistry(): void {
  tasks.clear();
  models.clear();
  architectures.clear();
  criterions.clear();
  loadedUserDirs.clear();
}

/** The functions a `--user-dir` plugin receives (so it need not import this package by path). */
export const pluginApi = { registerTask, registerModel, registerArchitecture, registerCriterion };
export type PluginApi = typeof pluginApi;

/**
 * Loads a user plugin: DIR/index.js (or index.mjs, or DIR itself if it is a file). The module
 * may export `default` or `register`, a function called with the registry API; or register
 * through its own imports as a side effect.
 */
export async function loadUserDir(dir: string): Promise<void> {
  const abs = resolve(dir);
  if (loadedUserDirs.has(abs)) return;
  if (!existsSync(abs)) throw new DifformerError('DIFFORMER_USER_DIR', `--user-dir ${dir}: no such file or directory`);
  let entry = abs;
  if (statSync(abs).isDirectory()) {
    const candidates = ['index.js', 'index.mjs', 'index.ts'].map((f) => join(abs, f));
    const found = candidates.find((f) => existsSync(f));
    if (!found) throw new DifformerError('DIFFORMER_USER_DIR', `--user-dir ${dir}: expected an index.js (or index.mjs) in it`);
    entry = found;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  } catch (e) {
    throw new DifformerError('DIFFORMER_USER_DIR', `--user-dir ${dir}: failed to load ${entry}: ${(e as Error).message}`, { cause: e });
  }
  const register = (typeof mod.register === 'function' ? mod.register : mod.default) as unknown;
  if (typeof register === 'function') {
    try {
      await (register as (api: PluginApi) => unknown)(pluginApi);
    } catch (e) {
      if (e instanceof DifformerError) throw e; // the registry's own messages (a name taken twice) say enough
      throw new DifformerError('DIFFORMER_USER_DIR', `--user-dir ${dir}: the plugin's register() failed: ${(e as Error).message}`, { cause: e });
    }
  }
  loadedUserDirs.add(abs);
}
