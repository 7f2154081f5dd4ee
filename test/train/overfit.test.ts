/**
 * End to end in-process: preprocess a handful of real sentence pairs, train a tiny Transformer
 * until it memorises them, generate them back; beam 1 equals greedy decoding; tensor counts
 * stay flat across training steps and generation batches.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { registerBuiltins } from '../../src/cli/builtins.js';
import { preprocessDefaults, runPreprocess } from '../../src/cli/preprocess.js';
import { createLogger, setLogger } from '../../src/log.js';
import { resolveOptions } from '../../src/options.js';
import { getArchitecture, getCriterion, getTask } from '../../src/registry.js';
import { Trainer } from '../../src/train/trainer.js';
import { trainingDefaults } from '../../src/train/trainer_options.js';
import type { Criterion, TrainableModel } from '../../src/train/types.js';
import { buildGenerator, resolveGeneratorOptions } from '../../src/generate/index.js';
import type { TransformerOptions } from '../../models/transformer.js';
import type { Task } from '../../src/task.js';
import type { ModelDeps } from '../../src/train/types.js';
import { FIXTURES, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const N = 8;
let task: Task;

before(async () => {
  await initBackend({ backend: 'wasm' });
  setLogger(createLogger('none'));
  registerBuiltins();
  // short real pairs from the fixture (German -> English software messages)
  const de = readFileSync(join(FIXTURES, 'gettext', 'train.de'), 'utf8').split('\n');
  const en = readFileSync(join(FIXTURES, 'gettext', 'train.en'), 'utf8').split('\n');
  const pick = de.map((_, i) => i).filter((i) => de[i]!.split(' ').length <= 6 && en[i]!.split(' ').length <= 6 && de[i]!.trim() && en[i]!.trim()).slice(0, N);
  const raw = join(tmp.path, 'raw');
  for (const [lang, lines] of [['de', de], ['en', en]] as const) {
    writeFileSync(`${raw}.${lang}`, pick.map((i) => lines[i]).join('\n') + '\n');
  }
  await runPreprocess({ ...preprocessDefaults, sourceLang: 'de', targetLang: 'en', trainpref: raw, validpref: raw, testpref: raw, destdir: join(tmp.path, 'bin'), joinedDictionary: true });
  task = await getTask('translation').setup({ sourceLang: 'de', targetLang: 'en', maxSourcePositions: 1024, maxTargetPositions: 1024, prependBos: false }, join(tmp.path, 'bin'));
});

test('a tiny Transformer overfits real pairs, generates them back, and beam 1 equals greedy', async () => {
  const { model: mc, preset } = getArchitecture<TransformerOptions, TrainableModel, ModelDeps>('transformer_tiny');
  const model = mc.build(resolveOptions(mc.defaults, preset, { dropout: 0, shareAllEmbeddings: true }), { srcDict: task.srcDict, tgtDict: task.tgtDict, seed: 3 });
  const cc = getCriterion<object, Criterion>('label_smoothed_cross_entropy');
  const criterion: Criterion = cc.build({ labelSmoothing: 0, sentenceAvg: false });
  criterion.check(model);
  const opts = resolveOptions(trainingDefaults, {
    lr: 3e-3, lrScheduler: 'fixed' as const, warmupUpdates: 0, maxTokens: 4096, maxUpdate: 120, noSave: true, disableValidation: true, logInterval: 1000, seed: 3,
  });
  const trainer = new Trainer(opts, {
    model, criterion, train: task.loadDataset('train'), valid: undefined, dicts: { src: task.srcDict, tgt: task.tgtDict },
    config: { task: { name: 'translation', options: {} }, model: { name: 'transformer', arch: 'transformer_tiny', options: {} }, criterion: { name: cc.name, options: {} }, training: opts },
    log: createLogger('none'), maxSourcePositions: 1024, maxTargetPositions: 1024,
  });
  const batch = task.loadDataset('train').collate(Array.from({ length: N }, (_, i) => i));
  trainer.step([batch]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) trainer.step([batch]);
  assert.equal(tf.memory().numTensors, before, 'no tensors leak across training steps');
  const summary = await trainer.train();
  assert.ok(summary.lastTrainLoss < 0.1, `loss ${summary.lastTrainLoss} should be near zero (base 2, per token)`);

  const gen5 = buildGenerator('transformer', model, { task, extra: [], options: { ...resolveGeneratorOptions({}), beam: 5 }, seed: 1 });
  const gen1 = buildGenerator('transformer', model, { task, extra: [], options: { ...resolveGeneratorOptions({}), beam: 1 }, seed: 1 });
  gen5.generate(batch);
  const t0 = tf.memory().numTensors;
  const hyp5 = gen5.generate(batch);
  const hyp1 = gen1.generate(batch);
  assert.equal(tf.memory().numTensors, t0, 'no tensors leak across generate batches');
  for (let b = 0; b < N; b++) {
    const ref = task.tgtDict.string(batch.target.subarray(b * batch.tgtLen, (b + 1) * batch.tgtLen));
    assert.equal(task.tgtDict.string(hyp5[b]![0]!.tokens), ref, `sentence ${b} (beam 5)`);
    assert.deepEqual([...hyp1[b]![0]!.tokens], greedy(model as unknown as GreedyModel, batch, b, task.tgtDict.eosIndex), `beam 1 = greedy, sentence ${b}`);
    const h = hyp5[b]![0]!;
    assert.ok(Math.abs(h.score - h.positionalScores.reduce((a, x) => a + x, 0) / h.tokens.length) < 1e-4, 'score = mean positional score at lenpen 1');
  }
  model.dispose();
});

interface GreedyModel {
  encode(src: tf.Tensor2D, training: boolean): unknown;
  initDecoderState(e: unknown): unknown;
  decodeStep(s: unknown, t: tf.Tensor2D): { logProbs: tf.Tensor2D; state: unknown };
  disposeEncoderOut(e: unknown): void;
  disposeDecoderState(s: unknown): void;
}

/** Plain argmax decoding of one sentence, independent of the beam search code. */
function greedy(model: GreedyModel, batch: { srcTokens: Int32Array; srcLen: number }, b: number, eos: number): number[] {
  const src = tf.tensor2d(batch.srcTokens.subarray(b * batch.srcLen, (b + 1) * batch.srcLen), [1, batch.srcLen], 'int32');
  const enc = model.encode(src, false);
  let state = model.initDecoderState(enc);
  const out: number[] = [];
  let last = eos;
  for (let step = 0; step < 50; step++) {
    const inp = tf.tensor2d([last], [1, 1], 'int32');
    const r = model.decodeStep(state, inp);
    state = r.state;
    const lp = r.logProbs.dataSync();
    const masked = Array.from(lp);
    masked[1] = -Infinity; // pad
    if (step < 1) masked[eos] = -Infinity; // min length 1, as beam search
    last = masked.indexOf(Math.max(...masked));
    r.logProbs.dispose();
    inp.dispose();
    out.push(last);
    if (last === eos) break;
  }
  src.dispose();
  model.disposeEncoderOut(enc);
  model.disposeDecoderState(state);
  return out;
}
