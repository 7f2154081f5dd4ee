/**
 * Backend selection, the wasm UnsortedSegmentSum kernel (gather's gradient) and tensor leaks.
 * tfjs backends are process-global: this file initialises wasm once and switches to cpu only
 * inside `onCpu` to compute reference results, always switching back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { initBackend, resetBackendForTests } from '../src/backend.js';
import { isDifformerError } from '../src/errors.js';
import { ROOT, onCpu, rng } from './helpers.js';


function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)), `${what}[${i}]: ${a} vs ${e}`);
  }
}

/** Plain-JS reference with tfjs semantics: ids outside [0, numSegments) are dropped. */
function segmentSumRef(x: number[], shape: number[], ids: number[], numSegments: number): number[] {
  const inner = shape.slice(1).reduce((a, b) => a * b, 1);
  const out = new Array<number>(numSegments * inner).fill(0);
  ids.forEach((s, i) => {
    if (s < 0 || s >= numSegments) return;
    for (let j = 0; j < inner; j++) out[s * inner + j]! += x[i * inner + j]!;
  });
  return out;
}

test('auto picks wasm here and says why tensorflow-gpu and tensorflow were skipped', async () => {
  const logs: string[] = [];
  const report = await initBackend({ backend: 'auto', log: (m) => logs.push(m) });
  assert.equal(report.name, 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  assert.match(report.reason, /wasm/);
  assert.deepEqual(
    report.skipped.map((s) => s.name),
    ['tensorflow-gpu', 'tensorflow'],
  );
  assert.match(report.skipped[0]!.why, /@tensorflow\/tfjs-node-gpu is not installed/);
  assert.match(report.skipped[1]!.why, /@tensorflow\/tfjs-node is not installed/);
  assert.ok(logs.length > 0, 'progress goes to the log callback');

  // Second call: cached, same answer, nothing re-initialised.
  const t0 = performance.now();
  const again = await initBackend({ backend: 'auto' });
  assert.ok(performance.now() - t0 < 250, "cached: no re-initialisation");
  assert.deepEqual(again, report);
  assert.deepEqual(await initBackend({ backend: 'wasm' }), report);
  // A different backend in the same process is refused, not silently switched.
  await assert.rejects(initBackend({ backend: 'cpu' }), (e: unknown) => isDifformerError(e) && e.code === 'DIFFORMER_BACKEND');
});

test('an explicit backend that cannot load is a DIFFORMER_BACKEND error', async () => {
  resetBackendForTests();
  try {
    await assert.rejects(initBackend({ backend: 'tensorflow-gpu' }), (e: unknown) => {
      assert.ok(isDifformerError(e));
      assert.equal(e.code, 'DIFFORMER_BACKEND');
      assert.match(e.message, /^--backend tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed \(npm install @tensorflow\/tfjs-node-gpu/);
      return true;
    });
    await assert.rejects(initBackend({ backend: 'tensorflow' }), (e: unknown) => {
      assert.ok(isDifformerError(e));
      assert.equal(e.code, 'DIFFORMER_BACKEND');
      assert.match(e.message, /@tensorflow\/tfjs-node is not installed/);
      return true;
    });
    await assert.rejects(
      initBackend({ backend: 'wasm', threads: 0 }),
      (e: unknown) => isDifformerError(e) && e.code === 'DIFFORMER_BAD_OPTION',
    );
    assert.equal(tf.getBackend(), 'wasm', 'a failed attempt leaves the working backend in place');
  } finally {
    resetBackendForTests();
    assert.equal((await initBackend({ backend: 'wasm' })).name, 'wasm');
  }
});

test('wasm UnsortedSegmentSum matches the cpu backend and a JS reference', async () => {
  await initBackend({ backend: 'wasm' });
  const r = rng(7);
  const cases: { shape: number[]; numSegments: number; idLo: number; idHi: number }[] = [
    { shape: [1], numSegments: 1, idLo: 0, idHi: 0 },
    { shape: [7], numSegments: 3, idLo: 0, idHi: 2 },
    { shape: [13, 5], numSegments: 4, idLo: -2, idHi: 6 }, // negative and >= numSegments: dropped
    { shape: [9, 3, 7], numSegments: 11, idLo: 0, idHi: 10 },
    { shape: [101, 33], numSegments: 17, idLo: -1, idHi: 17 },
    { shape: [0, 5], numSegments: 3, idLo: 0, idHi: 2 },
  ];
  for (const c of cases) {
    const size = c.shape.reduce((a, b) => a * b, 1);
    const x = Array.from({ length: size }, () => r() * 2 - 1);
    const ids = Array.from({ length: c.shape[0]! }, () => c.idLo + Math.floor(r() * (c.idHi - c.idLo + 1)));
    const run = (): Float32Array =>
      tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(x, c.shape), tf.tensor1d(ids, 'int32'), c.numSegments).dataSync() as Float32Array);
    const wasmOut = run();
    const expectedShape = [c.numSegments, ...c.shape.slice(1)];
    const shape = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(x, c.shape), tf.tensor1d(ids, 'int32'), c.numSegments).shape);
    assert.deepEqual(shape, expectedShape);
    assertClose(wasmOut, segmentSumRef(x, c.shape, ids, c.numSegments), 1e-5, `ref ${JSON.stringify(c)}`);
    if (size > 0) {
      // (tfjs's cpu kernel stacks an empty list for 0 rows and throws; nothing to compare then.)
      const cpuOut = await onCpu(run);
      assertClose(wasmOut, cpuOut, 1e-5, `cpu ${JSON.stringify(c)}`);
    }
  }
  // int32 input keeps its dtype.
  const ints = tf.tidy(() => {
    const y = tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4], 'int32'), tf.tensor1d([1, 0, 1, -1], 'int32'), 2);
    return { dtype: y.dtype, values: Array.from(y.dataSync()) };
  });
  assert.deepEqual(ints, { dtype: 'int32', values: [2, 4] });
});

test('gather gradient (embedding lookup) on wasm matches the cpu backend', async () => {
  await initBackend({ backend: 'wasm' });
  const r = rng(11);
  const vocab = 23;
  const dim = 7;
  const table = Array.from({ length: vocab * dim }, () => r() - 0.5);
  const idx = Array.from({ length: 3 * 5 }, () => Math.floor(r() * vocab));
  idx[1] = idx[0]!; // repeated ids must accumulate
  const weights = Array.from({ length: 3 * 5 * dim }, () => r() - 0.5);
  const run = (): Float32Array =>
    tf.tidy(() => {
      const e = tf.tensor2d(table, [vocab, dim]);
      const ids = tf.tensor2d(idx, [3, 5], 'int32');
      const w = tf.tensor3d(weights, [3, 5, dim]);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), w)))(e);
      return g.dataSync() as Float32Array;
    });
  const wasmGrad = run();
  const cpuGrad = await onCpu(run);
  assertClose(wasmGrad, cpuGrad, 1e-5, 'dE');
  // And against the definition: dE[v] = sum of w rows whose id is v.
  const expected = new Array<number>(vocab * dim).fill(0);
  idx.forEach((v, i) => {
    for (let j = 0; j < dim; j++) expected[v * dim + j]! += weights[i * dim + j]!;
  });
  assertClose(wasmGrad, expected, 1e-5, 'dE vs definition');
});

test('repeated calls do not leak tensors', async () => {
  await initBackend({ backend: 'wasm' });
  const step = (): void => {
    tf.tidy(() => {
      const e = tf.randomNormal([50, 8]);
      const ids = tf.tensor1d([3, 1, 3, 49, 0], 'int32');
      tf.unsortedSegmentSum(tf.randomNormal([5, 8]), ids, 50).dataSync();
      tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, ids)))(e).dataSync();
    });
  };
  step(); // warm-up (first calls may cache things)
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) {
    step();
    await initBackend({ backend: 'auto' });
  }
  assert.equal(tf.memory().numTensors, before);
});

test('experimental wasm threads (separate process): 2 threads, correct results, process exits', () => {
  // Own process: the wasm module (threaded or not) is created once per process.
  const script = `
    import * as tf from '@tensorflow/tfjs';
    import { initBackend } from './src/backend.ts';
    const report = await initBackend({ backend: 'wasm', wasmThreads: true, threads: 2 });
    const a = tf.randomNormal([64, 48]), b = tf.randomNormal([48, 80]);
    const got = tf.matMul(a, b).dataSync();
    const A = a.dataSync(), B = b.dataSync();
    let maxErr = 0;
    for (let i = 0; i < 64; i++) for (let j = 0; j < 80; j++) {
      let s = 0; for (let k = 0; k < 48; k++) s += A[i * 48 + k] * B[k * 80 + j];
      maxErr = Math.max(maxErr, Math.abs(s - got[i * 80 + j]));
    }
    const g = tf.grad((t) => tf.sum(tf.gather(t, tf.tensor1d([1, 1, 2], 'int32'))))(tf.ones([4, 3])).dataSync();
    process.stdout.write(JSON.stringify({ report, maxErr, g: Array.from(g) }));
  `;
  const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(res.error, undefined, `child failed to run or hung: ${String(res.error)}`);
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout) as { report: { name: string; reason: string }; maxErr: number; g: number[] };
  assert.equal(out.report.name, 'wasm');
  assert.match(out.report.reason, /2 threads, experimental threads shim/);
  assert.ok(out.maxErr < 1e-4, `matmul error ${out.maxErr}`);
  assert.deepEqual(out.g, [0, 0, 0, 2, 2, 2, 1, 1, 1, 0, 0, 0]);
});
