import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, test } from 'node:test';
import { DifformerError } from '../src/errors.js';
import {
  getArchitecture,
  getCriterion,
  getTask,
  knownNames,
  loadUserDir,
  registerArchitecture,
  registerModel,
  registerTask,
  resetRegistry,
} from '../src/registry.js';
import { registerBuiltins } from '../src/cli/builtins.js';
import { translationTask } from '../tasks/translation.js';
import { FIXTURES } from './helpers.js';

beforeEach(() => resetRegistry());

const isCode = (code: string) => (e: unknown) => e instanceof DifformerError && e.code === code;

test('unknown names fail listing the known ones', () => {
  registerTask(translationTask);
  assert.throws(() => getTask('translaton'), (e: unknown) => isCode('DIFFORMER_UNKNOWN_NAME')(e) && /known: translation/.test((e as Error).message));
  assert.throws(() => getArchitecture('nope'), /unknown architecture 'nope' \(--arch\)/);
  assert.throws(() => getCriterion('nope'), /unknown criterion 'nope'/);
});

test('duplicates and architectures of unknown models are rejected', () => {
  registerTask(translationTask);
  assert.throws(() => registerTask(translationTask), isCode('DIFFORMER_DUPLICATE_NAME'));
  assert.throws(() => registerArchitecture('ghost', 'ghost_tiny', {}), /unknown model 'ghost'/);
  const m = { name: 'm', description: '', options: {}, defaults: {}, build: () => 1 };
  registerModel(m);
  registerArchitecture('m', 'm_tiny', {});
  assert.throws(() => registerArchitecture('m', 'm_tiny', {}), isCode('DIFFORMER_DUPLICATE_NAME'));
});

test('built-in tasks are registered', () => {
  registerBuiltins();
  assert.deepEqual(knownNames().tasks, ['summarization', 'translation']);
});

test('--user-dir loads a plugin that registers a model, an architecture and a criterion', async () => {
  await loadUserDir(join(FIXTURES, 'plugin'));
  const { model, preset } = getArchitecture<{ width: number }>('my_model_wide');
  assert.equal(model.name, 'my_model');
  assert.deepEqual(preset, { width: 64 });
  assert.deepEqual(model.build({ width: 64 }, undefined), { kind: 'my_model', width: 64 });
  assert.equal(getCriterion('my_loss').name, 'my_loss');
  await assert.rejects(loadUserDir(join(FIXTURES, 'no-such-plugin')), isCode('DIFFORMER_USER_DIR'));
});

test('resetRegistry forgets built-ins and plugins alike: both register again afterwards', async () => {
  registerBuiltins();
  await loadUserDir(join(FIXTURES, 'plugin'));
  resetRegistry();
  assert.deepEqual(knownNames().tasks, []);
  assert.throws(() => getCriterion('my_loss'), /unknown criterion/);
  registerBuiltins();
  await loadUserDir(join(FIXTURES, 'plugin'));
  assert.deepEqual(knownNames().tasks, ['summarization', 'translation']);
  assert.equal(getCriterion('my_loss').name, 'my_loss');
});

test('--user-dir: a plugin whose register() throws is named in one user error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plugin-'));
  try {
    writeFileSync(join(dir, 'index.js'), "export default function register() { throw new Error('missing peer dependency'); }\n");
    await assert.rejects(loadUserDir(dir), (e: unknown) => isCode('DIFFORMER_USER_DIR')(e) && /register\(\) failed: missing peer dependency/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
