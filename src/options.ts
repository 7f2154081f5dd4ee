/**
 * Typed, declared-once CLI options (after vitest's cli-config): every component exports an
 * option table mapped over its options interface, so each key is either a flag spec or `null`
 * ("not on the command line"). Commander flags carry no defaults: `readOptions` returns only
 * what the user gave, and `resolveOptions` layers defaults < architecture < given flags.
 */
import { Command, Option } from 'commander';
import { DifformerError } from './errors.js';

export interface FlagSpec<T> {
  /** Long flag, e.g. `--max-tokens`. Booleans also get `--no-<name>`. */
  readonly flag: string;
  readonly help: string;
  /** Placeholder shown in --help; absent for booleans. */
  readonly arg?: string;
  readonly choices?: readonly string[];
  readonly short?: string;
  /** Turns the raw string into the value; throws naming the flag on bad input. */
  readonly parse?: (raw: string) => T;
  /** For --help only: the default after resolving (components fill it from their defaults). */
  readonly shownDefault?: string;
}

/** Every key of O must be declared: a flag, or null when the key is not a CLI option. */
export type OptionTable<O> = { readonly [K in keyof O]-?: FlagSpec<O[K]> | null };

function badValue(flag: string, raw: string, want: string): never {
  throw new DifformerError('DIFFORMER_BAD_OPTION', `${flag} expects ${want}, got '${raw}'`);
}

/** An integer flag; `min` is the smallest meaningful value (1 for sizes, 0 for "0 = off"). */
export function intFlag(flag: string, help: string, arg = 'N', min = -Infinity): FlagSpec<number> {
  return {
    flag,
    help,
    arg,
    parse: (raw) => {
      // decimal digits only: Number() would take '' as 0 and '0x2' as 2
      if (!/^\s*[+-]?\d+\s*$/.test(raw)) badValue(flag, raw, 'an integer');
      const v = Number(raw);
      if (v < min) badValue(flag, raw, `an integer >= ${min}`);
      return v;
    },
  };
}

export function floatFlag(flag: string, help: string, arg = 'X'): FlagSpec<number> {
  return {
    flag,
    help,
    arg,
    parse: (raw) => {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v)) badValue(flag, raw, 'a number');
      return v;
    },
  };
}

/** Comma- or space-separated numbers; accepts fairseq's '(0.9, 0.98)' spelling too. */
export function floatsFlag(flag: string, help: string, arg = 'X,Y'): FlagSpec<number[]> {
  return {
    flag,
    help,
    arg,
    parse: (raw) => {
      const parts = raw.replace(/[()[\]]/g, ' ').split(/[\s,]+/).filter((s) => s.length > 0);
      const vals = parts.map(Number);
      if (vals.length === 0 || vals.some((v) => !Number.isFinite(v))) badValue(flag, raw, 'a list of numbers');
      return vals;
    },
  };
}

export function stringFlag(flag: string, help: string, arg = 'STR'): FlagSpec<string> {
  return { flag, help, arg, parse: (raw) => raw };
}

export function optionalStringFlag(flag: string, help: string, arg = 'STR'): FlagSpec<string | undefined> {
  return { flag, help, arg, parse: (raw) => raw };
}

export function boolFlag(flag: string, help: string): FlagSpec<boolean> {
  return { flag, help };
}

export function choiceFlag<C extends string>(flag: string, help: string, choices: readonly C[]): FlagSpec<C> {
  return {
    flag,
    help,
    arg: 'NAME',
    choices,
    parse: (raw) => {
      if (!(choices as readonly string[]).includes(raw)) {
        throw new DifformerError('DIFFORMER_BAD_OPTION', `${flag} must be one of ${choices.join(', ')}; got '${raw}'`);
      }
      return raw as C;
    },
  };
}

/** Commander's attribute name for a long flag: `--max-tokens` -> `maxTokens`. */
export function attributeName(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Adds a table's flags to a command. Flags already present (shared between components, e.g.
 * `--dropout`) are added once; a clash of kinds (boolean vs valued) is a programming error.
 */
export function addOptions<O>(cmd: Command, table: OptionTable<O>, defaults?: Partial<O>): void {
  const existing = new Map(cmd.options.map((o) => [o.long ?? '', o] as const));
  for (const key of Object.keys(table) as (keyof O)[]) {
    const spec = table[key];
    if (!spec) continue;
    const prev = existing.get(spec.flag);
    if (prev) {
      if (prev.isBoolean() !== (spec.parse === undefined)) {
        throw new Error(`option ${spec.flag} declared twice with different kinds`);
      }
      continue;
    }
    const def = defaults?.[key];
    const shown = spec.shownDefault ?? (def === undefined ? undefined : JSON.stringify(def));
    const help = shown === undefined ? spec.help : `${spec.help} (default: ${shown})`;
    const long = spec.short ? `${spec.short}, ${spec.flag}` : spec.flag;
    if (spec.parse) {
      const parse = spec.parse;
      const opt = new Option(`${long} <${spec.arg ?? 'VALUE'}>`, help).argParser((raw: string) => parse(raw));
      // a valued flag named --no-... (fairseq's --no-repeat-ngram-size N) is not a negation:
      // commander would store it as repeatNgramSize, default true
      opt.negate = false;
      if (spec.choices) opt.choices(spec.choices);
      cmd.addOption(opt);
    } else if (spec.flag.startsWith('--no-')) {
      // fairseq-style negative flags (--no-scale-embedding): commander stores them as
      // scaleEmbedding = false, with a default of true; readOptions maps that back
      cmd.addOption(new Option(long, help));
    } else {
      cmd.addOption(new Option(long, help));
      cmd.addOption(new Option(`--no-${spec.flag.slice(2)}`, `disable ${spec.flag}`).hideHelp());
    }
    existing.set(spec.flag, cmd.options[cmd.options.length - 1]!);
  }
}

/** The values the user actually gave for a table's flags (undefined = not given). */
export function readOptions<O>(table: OptionTable<O>, parsed: Record<string, unknown>): Partial<O> {
  const out: Partial<O> = {};
  for (const key of Object.keys(table) as (keyof O)[]) {
    const spec = table[key];
    if (!spec) continue;
    if (!spec.parse && spec.flag.startsWith('--no-')) {
      // given only when commander's positive attribute was set to false
      if (parsed[attributeName(`--${spec.flag.slice(5)}`)] === false) out[key] = true as O[keyof O];
      continue;
    }
    const v = parsed[attributeName(spec.flag)];
    if (v !== undefined) out[key] = v as O[keyof O];
  }
  return out;
}

/** Defaults, then each partial layer in order; `undefined` in a layer never overrides. */
export function resolveOptions<O extends object>(defaults: Readonly<O>, ...layers: Partial<O>[]): O {
  const out = { ...defaults } as O;
  for (const layer of layers) {
    for (const key of Object.keys(layer) as (keyof O)[]) {
      const v = layer[key];
      if (v !== undefined) out[key] = v as O[keyof O];
    }
  }
  return out;
}

/** Options every compute subcommand shares. */
export interface CommonOptions {
  backend: 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
  threads: number;
  wasmThreads: boolean;
  logFormat: 'simple' | 'json' | 'none';
  userDir: string | undefined;
  seed: number;
  debug: boolean;
}

export const commonDefaults: Readonly<CommonOptions> = Object.freeze({
  backend: 'auto',
  threads: 0,
  wasmThreads: false,
  logFormat: 'simple',
  userDir: undefined,
  seed: 1,
  debug: false,
});

export const commonOptionTable: OptionTable<CommonOptions> = {
  backend: choiceFlag('--backend', 'TensorFlow.js backend: auto tries tensorflow-gpu, tensorflow, wasm, cpu in that order', [
    'auto',
    'tensorflow-gpu',
    'tensorflow',
    'wasm',
    'cpu',
  ] as const),
  threads: intFlag('--threads', 'compute threads (0 = backend default)', 'N', 0),
  wasmThreads: boolFlag('--wasm-threads', 'experimental: multi-threaded wasm under Node'),
  logFormat: choiceFlag('--log-format', 'log format on stderr', ['simple', 'json', 'none'] as const),
  userDir: optionalStringFlag('--user-dir', 'directory with a plugin (index.js) that registers tasks, models, criterions', 'DIR'),
  seed: intFlag('--seed', 'random seed (training: initialisation, dropout, noise, batch order; decoding: noise)'),
  debug: boolFlag('--debug', 'print stack traces for errors'),
};

/** "name: stored -> now" for every option whose value differs (by JSON) between two option records. */
export function optionChanges(stored: object, now: object): string[] {
  const a = stored as Record<string, unknown>;
  const b = now as Record<string, unknown>;
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const [x, y] = [JSON.stringify(a[k]), JSON.stringify(b[k])];
    if (x !== y) out.push(`${k}: ${x ?? 'unset'} -> ${y ?? 'unset'}`);
  }
  return out;
}
