import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ParamStore } from '../../src/nn/params.js';
import { embedPositionAt, embedPositions, initPositions, makePositions, sinusoidalTable, timestepEmbedding } from '../../src/nn/positions.js';

await tf.setBackend('cpu');

/** fairseq's SinusoidalPositionalEmbedding.get_embedding, restated independently (float64). */
function fairseqSinusoid(pos: number, dim: number): number[] {
  const half = Math.floor(dim / 2);
  const row: number[] = new Array(dim).fill(0);
  for (let i = 0; i < half; i++) {
    const freq = Math.exp(-i * (Math.log(10000) / (half - 1)));
    row[i] = Math.sin(pos * freq);
    row[half + i] = Math.cos(pos * freq);
  }
  return row;
}

test('sinusoidal table matches fairseq: [sin | cos] halves, pad row zero', () => {
  const pad = 1;
  const dim = 16;
  const table = sinusoidalTable(40, dim, pad);
  for (const p of [0, 2, 3, 7, 39]) {
    const want = fairseqSinusoid(p, dim);
    for (let j = 0; j < dim; j++) assert.ok(Math.abs(table[p * dim + j]! - want[j]!) < 2e-5, `pos ${p} dim ${j}`);
  }
  for (let j = 0; j < dim; j++) assert.equal(table[pad * dim + j], 0);
  // Position 2 is the first real token: sin(2) in column 0, cos(2) in column 8.
  assert.ok(Math.abs(table[2 * dim]! - Math.sin(2)) < 1e-6);
  assert.ok(Math.abs(table[2 * dim + 8]! - Math.cos(2)) < 1e-6);
});

test('odd embedding dims get a zero last column', () => {
  const table = sinusoidalTable(5, 7, 1);
  for (let p = 0; p < 5; p++) assert.equal(table[p * 7 + 6], 0);
  assert.ok(Math.abs(table[3 * 7]! - Math.sin(3)) < 1e-6);
});

test('make_positions counts non-pad tokens from pad+1 (right and left padding)', () => {
  const pad = 1;
  const tokens = tf.tensor2d(
    [
      [5, 6, 7, 1],
      [1, 1, 8, 9],
    ],
    [2, 4],
    'int32',
  );
  assert.deepEqual(makePositions(tokens, pad).arraySync(), [
    [2, 3, 4, 1],
    [1, 1, 2, 3],
  ]);
});

test('sinusoidal position embeddings of tokens; pad positions get zeros', () => {
  const store = new ParamStore(1);
  const pad = 1;
  initPositions(store, 'encoder.embed_positions', { maxPositions: 10, dim: 8, padIndex: pad, learned: false });
  assert.deepEqual(store.names(), [], 'sinusoidal tables are buffers, not parameters');
  const tokens = tf.tensor2d([[1, 4, 5]], [1, 3], 'int32');
  const e = embedPositions(store, 'encoder.embed_positions', tokens, pad).arraySync()[0]!;
  assert.ok(e[0]!.every((v) => v === 0));
  const want = fairseqSinusoid(2, 8);
  e[1]!.forEach((v, j) => assert.ok(Math.abs(v - want[j]!) < 2e-5));
  const step = embedPositionAt(store, 'encoder.embed_positions', 2, 1, pad).arraySync();
  assert.deepEqual(step.length, 2);
  step[1]![0]!.forEach((v, j) => assert.ok(Math.abs(v - fairseqSinusoid(3, 8)[j]!) < 2e-5));
  assert.throws(() => embedPositions(store, 'encoder.embed_positions', tf.zeros([1, 11], 'int32') as tf.Tensor2D, pad), /exceeds the 10 positions/);
  store.dispose();
});

test('learned positions: maxPositions + pad + 1 rows, pad row zero, N(0, d^-0.5)', () => {
  const store = new ParamStore(3);
  initPositions(store, 'decoder.embed_positions', { maxPositions: 100, dim: 64, padIndex: 1, learned: true });
  const w = store.get('decoder.embed_positions.weight');
  assert.deepEqual(w.shape, [102, 64]);
  const values = w.arraySync() as number[][];
  assert.ok(values[1]!.every((v) => v === 0));
  const flat = values.flat().filter((_, i) => Math.floor(i / 64) !== 1);
  const std = Math.sqrt(flat.reduce((a, v) => a + v * v, 0) / flat.length);
  assert.ok(Math.abs(std - 64 ** -0.5) < 0.01, `std ${std}`);
  store.dispose();
});

test('time embedding is [cos | sin] with freq exp(-ln(1e4) i / half), cos first', () => {
  const e = timestepEmbedding([0, 500], 8);
  assert.deepEqual(Array.from(e.subarray(0, 8)), [1, 1, 1, 1, 0, 0, 0, 0]);
  assert.ok(Math.abs(e[8]! - Math.cos(500)) < 1e-6);
  assert.ok(Math.abs(e[8 + 5]! - Math.sin(500 * Math.exp(-Math.log(10000) / 4))) < 1e-6);
});
