import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DifformerError } from '../../src/errors.js';
import { dropout } from '../../src/nn/dropout.js';
import { initEmbedding } from '../../src/nn/embedding.js';
import { normal, ParamStore, Rng, untaped, xavierUniform, zeros } from '../../src/nn/params.js';

await tf.setBackend('cpu');

test('Rng is deterministic per seed and resumes from a saved state', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const xa = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(xa, Array.from({ length: 5 }, () => b.nextUint32()));
  assert.notDeepEqual(xa, Array.from({ length: 5 }, () => c.nextUint32()));
  const state = a.getState();
  const next = a.fillNormal(7, 0, 1);
  const resumed = new Rng(0);
  resumed.setState(state);
  assert.deepEqual(resumed.fillNormal(7, 0, 1), next);
  assert.throws(() => resumed.setState([0, 0, 0, 0]), DifformerError);
});

test('Rng draws have the right moments', () => {
  const r = new Rng(1);
  const u = r.fillUniform(20000, -1, 1);
  const n = r.fillNormal(20000, 2, 0.5);
  const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
  assert.ok(u.every((v) => v >= -1 && v < 1));
  assert.ok(Math.abs(mean(u)) < 0.02);
  assert.ok(Math.abs(mean(n) - 2) < 0.02);
  const sd = Math.sqrt(mean(n.map((v) => (v - 2) ** 2)));
  assert.ok(Math.abs(sd - 0.5) < 0.02);
});

test('ParamStore: names, record, assign with shape checks, aliases, counts', () => {
  const s = new ParamStore(1);
  s.create('encoder.a.weight', [3, 2], xavierUniform());
  s.create('encoder.a.bias', [3], zeros);
  initEmbedding(s, 'encoder.embed_tokens.weight', 5, 4, 1);
  s.alias('decoder.embed_tokens.weight', 'encoder.embed_tokens.weight');
  assert.deepEqual(s.names(), ['encoder.a.weight', 'encoder.a.bias', 'encoder.embed_tokens.weight']);
  assert.equal(s.numParams(), 6 + 3 + 20);
  assert.ok((s.get('encoder.embed_tokens.weight').arraySync() as number[][])[1]!.every((v) => v === 0));
  assert.throws(() => s.create('encoder.a.bias', [3], zeros), /already exists/);

  const rec = s.toRecord();
  assert.deepEqual(Object.keys(rec), s.names());
  assert.throws(
    () => s.assign({ ...rec, 'encoder.a.bias': tf.zeros([4]) }),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_CHECKPOINT' && /encoder\.a\.bias: model has \[3\], checkpoint has \[4\]/.test(e.message),
  );
  assert.throws(() => s.assign({ 'encoder.a.bias': tf.zeros([3]) }), /missing \[encoder\.a\.weight, encoder\.embed_tokens\.weight\]/);
  assert.throws(() => s.assign({ ...rec, extra: tf.zeros([1]) }), /unexpected \[extra\]/);
  s.assign({ 'encoder.a.bias': tf.tensor1d([1, 2, 3]) }, { strict: false });
  assert.deepEqual(Array.from(s.get('encoder.a.bias').dataSync()), [1, 2, 3]);
  // An alias name in a record stands for its target (fairseq state dicts list both).
  s.assign({ 'decoder.embed_tokens.weight': tf.ones([5, 4]) }, { strict: false });
  assert.equal(s.get('encoder.embed_tokens.weight').dataSync()[0], 1);
  s.dispose();
});

test('ParamStore: freezing by prefix; buffers are not parameters; dispose frees everything', () => {
  const before = tf.memory().numTensors;
  const s = new ParamStore(2);
  s.create('encoder.embed_tokens.weight', [4, 2], normal(1));
  s.create('encoder.layers.0.fc1.weight', [2, 2], normal(1));
  s.registerBuffer('encoder.embed_positions.weights', tf.zeros([3, 2]));
  assert.deepEqual(s.setTrainable('encoder.embed_tokens', false), ['encoder.embed_tokens.weight']);
  assert.equal(s.numParams({ trainableOnly: true }), 4);
  assert.equal(s.trainableVariables().length, 1);
  assert.throws(() => s.setTrainable('decoder.', false), /no parameter name starts with/);
  assert.deepEqual(s.names().length, 2);
  s.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('dropout: identity when not training; seeded masks with inverted scaling when training', () => {
  const x = tf.ones([1000]);
  const rngA = new Rng(5);
  assert.equal(dropout(x, 0.3, { training: false, rng: rngA }), x);
  const a = dropout(x, 0.3, { training: true, rng: new Rng(5) }).dataSync();
  const b = dropout(x, 0.3, { training: true, rng: new Rng(5) }).dataSync();
  assert.deepEqual(a, b);
  const kept = a.filter((v) => v !== 0);
  assert.ok(kept.every((v) => Math.abs(v - 1 / 0.7) < 1e-6));
  assert.ok(Math.abs(kept.length / 1000 - 0.7) < 0.05);
});

test('untaped: no gradient through the wrapped computation', () => {
  const x = tf.tensor1d([1, 2, 3]);
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.add(untaped(v, () => tf.square(v)), v)))(x);
  assert.deepEqual(Array.from(g.dataSync()), [1, 1, 1]);
  tf.dispose([x, g]);
});
