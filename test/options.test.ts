import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { addOptions, boolFlag, choiceFlag, floatsFlag, intFlag, readOptions, resolveOptions, type OptionTable } from '../src/options.js';
import { DifformerError } from '../src/errors.js';
import { generationOptionTable } from '../src/generate/generator.js';
import { trainingOptionTable } from '../src/train/trainer_options.js';

interface Opts {
  maxTokens: number;
  shareAll: boolean;
  betas: number[];
  schedule: 'sqrt' | 'linear';
  internal: string;
}
const defaults: Opts = { maxTokens: 4096, shareAll: false, betas: [0.9, 0.999], schedule: 'sqrt', internal: 'x' };
const table: OptionTable<Opts> = {
  maxTokens: intFlag('--max-tokens', 'tokens per batch', 'N', 1),
  shareAll: boolFlag('--share-all', 'share'),
  betas: floatsFlag('--adam-betas', 'betas'),
  schedule: choiceFlag('--schedule', 'schedule', ['sqrt', 'linear'] as const),
  internal: null,
};

/** The flags of `t` that argv gives, as a subcommand reads them. */
function parseWith<O>(t: OptionTable<O>, argv: string[], defs?: Partial<O>): Partial<O> {
  const cmd = new Command('t').exitOverride();
  addOptions(cmd, t, defs);
  cmd.parse(argv, { from: 'user' });
  return readOptions(t, cmd.opts());
}
const parse = (argv: string[]): Partial<Opts> => parseWith(table, argv, defaults);

test('only given flags are read; defaults < architecture < flags', () => {
  assert.deepEqual(parse([]), {});
  const given = parse(['--max-tokens', '2048', '--adam-betas', '(0.9, 0.98)', '--share-all']);
  assert.deepEqual(given, { maxTokens: 2048, betas: [0.9, 0.98], shareAll: true });
  const arch: Partial<Opts> = { maxTokens: 1000, schedule: 'linear' };
  assert.deepEqual(resolveOptions(defaults, arch, given), { maxTokens: 2048, shareAll: true, betas: [0.9, 0.98], schedule: 'linear', internal: 'x' });
  assert.equal(parse(['--no-share-all']).shareAll, false);
});

test('bad values name the flag', () => {
  assert.throws(() => parse(['--max-tokens', '1.5']), (e: unknown) => e instanceof DifformerError && /--max-tokens expects an integer, got '1.5'/.test(e.message));
  // '' and hex would pass Number(); a size below its minimum is named with the bound
  for (const raw of ['', ' ', '0x2', '1e3']) assert.throws(() => parse(['--max-tokens', raw]), /--max-tokens expects an integer, got/);
  assert.throws(() => parse(['--max-tokens', '0']), /--max-tokens expects an integer >= 1, got '0'/);
  assert.equal(parse(['--max-tokens', ' 16 ']).maxTokens, 16);
  assert.throws(() => parse(['--schedule', 'cosin']), /'cosin' is invalid. Allowed choices are sqrt, linear/);
});

test('sizes the tools cannot use are refused where they are declared', () => {
  const bad: [OptionTable<object>, string, string][] = [
    [generationOptionTable, '--beam', '0'],
    [generationOptionTable, '--nbest', '-3'],
    [trainingOptionTable, '--batch-size', '0'],
    [trainingOptionTable, '--update-freq', '0'],
    [trainingOptionTable, '--max-tokens', '-5'],
    [trainingOptionTable, '--max-update', '-1'],
  ];
  for (const [t, flag, raw] of bad) assert.throws(() => parseWith(t, [flag, raw]), new RegExp(`${flag} expects an integer >= \\d, got '${raw}'`));
});

test('a flag declared twice with different kinds is a programming error', () => {
  const cmd = new Command('t');
  addOptions(cmd, table);
  const other: OptionTable<{ x: boolean }> = { x: boolFlag('--max-tokens', 'clash') };
  assert.throws(() => addOptions(cmd, other), /declared twice/);
});

test("fairseq's negative flags (--no-scale-embedding) read as true only when given", () => {
  const t: OptionTable<{ noScale: boolean }> = { noScale: boolFlag('--no-scale-embedding', 'no scaling') };
  const run = (argv: string[]) => parseWith(t, argv);
  assert.deepEqual(run([]), {});
  assert.deepEqual(run(['--no-scale-embedding']), { noScale: true });
});

test('a valued flag named --no-... (--no-repeat-ngram-size N) reads as its number, not as a negation', () => {
  const run = (argv: string[]) => parseWith(generationOptionTable, argv);
  assert.deepEqual(run([]), {});
  assert.deepEqual(run(['--no-repeat-ngram-size', '3', '--beam', '4']), { noRepeatNgramSize: 3, beam: 4 });
});
