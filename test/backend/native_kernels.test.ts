/**
 * The native CPU kernels (src/backend/native_kernels.ts) against tfjs's own implementations:
 * every replaced wasm kernel and every fused op, values and gradients, on random shapes with odd
 * sizes, all transpose combinations, batch broadcasting and empty dimensions. References come
 * from tfjs's `cpu` backend (switched in and out; backends are process-global) or, where tfjs
 * itself is wrong (matmul batch broadcasting with size-1 dims on both sides, K = 0 on wasm), a
 * float64 JS loop. Skipped with the reason when the addon is not built or is disabled
 * (DIFFORMER_NATIVE=0); the zero-copy JS kernels are tested on every path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import {
  addDropoutMasked,
  chooseOpenBlasCoreType,
  applyDropoutMask,
  dropoutMask,
  layerNormOp,
  nativeAdamStep,
  nativeAddon,
  nativeSmoothedXentTerms,
  nativeSumSquares,
  registerNativeKernels,
} from '../../src/backend/native_kernels.js';
import { Rng } from '../../src/nn/params.js';
import { onCpu, rng } from '../helpers.js';
import { variableGradsLowMemory } from '../../src/train/optimizer.js';

await initBackend({ backend: 'wasm' });
const status = registerNativeKernels();
const skip = nativeAddon() === undefined ? `native addon not loaded: ${status.detail}` : false;

function randn(r: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: ${a} vs NaN`);
      continue;
    }
    if (!Number.isFinite(e)) {
      assert.equal(a, e, `${what}[${i}]`);
      continue;
    }
    assert.ok(Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)), `${what}[${i}]: ${a} vs ${e}`);
  }
}

/** Values of tensors as arrays (and disposes them). */
function read(ts: tf.Tensor | tf.Tensor[]): { shape: number[]; data: number[] }[] {
  const list = Array.isArray(ts) ? ts : [ts];
  const out = list.map((t) => ({ shape: t.shape.slice(), data: Array.from(t.dataSync()) }));
  tf.dispose(list);
  return out;
}

/** Forward value and gradients of f with respect to its inputs, on the current backend. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: { data: Float32Array; shape: number[] }[]): { shape: number[]; data: number[] }[] {
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape, 'float32'));
    // A fixed non-uniform upstream gradient (computed in JS: the same bits on every backend).
    const weigh = (y: tf.Tensor): tf.Tensor => tf.sum(tf.mul(y, tf.tensor(Float32Array.from({ length: size(y.shape) }, (_, i) => Math.sin(i + 1)), y.shape)));
    const { value, grads } = tf.valueAndGrads((...a: tf.Tensor[]) => weigh(f(...a)))(xs);
    return read([value, ...grads, f(...xs)]);
  });
}

async function compareWithCpu(what: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: { data: Float32Array; shape: number[] }[], tol = 2e-5): Promise<void> {
  const ours = valueAndGrads(f, inputs);
  const ref = await onCpu(() => valueAndGrads(f, inputs));
  ours.forEach((o, i) => {
    assert.deepEqual(o.shape, ref[i]!.shape, `${what}: shape of output ${i}`);
    // Output 0 is a weighted sum over every element (the outputs themselves are compared
    // element-wise as the last entry): a float32 sum of ~1e5 terms in another order differs
    // by up to ~1e-4 relative, so its tolerance cannot be the element-wise one.
    assertClose(o.data, ref[i]!.data, i === 0 ? Math.max(tol, 2e-4) : tol, `${what} (output ${i})`);
  });
}

// ---- matmul -------------------------------------------------------------------------------

/** float64 reference of op(a) x op(b) with numpy batch broadcasting. */
function matmulRef(a: Float32Array, as: number[], b: Float32Array, bs: number[], ta: boolean, tb: boolean): { shape: number[]; data: number[] } {
  const m = ta ? as[as.length - 1]! : as[as.length - 2]!;
  const k = ta ? as[as.length - 2]! : as[as.length - 1]!;
  const n = tb ? bs[bs.length - 2]! : bs[bs.length - 1]!;
  const ab = as.slice(0, -2);
  const bb = bs.slice(0, -2);
  const rank = Math.max(ab.length, bb.length);
  const pad = (s: number[]): number[] => [...Array(rank - s.length).fill(1), ...s];
  const pa = pad(ab);
  const pb = pad(bb);
  const ob = pa.map((d, i) => (d === 1 ? pb[i]! : d));
  const out: number[] = [];
  const idx = new Array<number>(rank).fill(0);
  const flat = (dims: number[], id: number[]): number => dims.reduce((acc, d, i) => acc * d + (d === 1 ? 0 : id[i]!), 0);
  for (let t = 0; t < size(ob); t++) {
    let rem = t;
    for (let i = rank - 1; i >= 0; i--) {
      idx[i] = rem % ob[i]!;
      rem = Math.floor(rem / ob[i]!);
    }
    const ao = flat(pa, idx) * m * k;
    const bo = flat(pb, idx) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += a[ao + (ta ? q * m + i : i * k + q)]! * b[bo + (tb ? j * k + q : q * n + j)]!;
        out.push(s);
      }
    }
  }
  return { shape: [...ob, m, n], data: out };
}

const MATMUL_CASES: { a: number[]; b: number[] }[] = [
  // [batchA, batchB] with M, K, N chosen below
  { a: [], b: [] },
  { a: [3], b: [3] },
  { a: [3], b: [] },
  { a: [], b: [4] },
  { a: [2, 1], b: [1, 3] },
  { a: [2, 3], b: [3] },
  { a: [1], b: [5] },
  { a: [0], b: [0] },
  { a: [2, 3], b: [2, 3] },
];
const DIMS: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [13, 17, 11],
  [33, 64, 9],
  [2, 0, 3], // K = 0: zeros
  [0, 4, 3],
  [3, 4, 0],
  [70, 130, 65],
];

test('BatchMatMul: all transposes, odd sizes, batch broadcast, empty dims (vs float64)', { skip }, () => {
  const r = rng(1);
  for (const c of MATMUL_CASES) {
    for (const [m, k, n] of DIMS) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          const as = [...c.a, ...(ta ? [k, m] : [m, k])];
          const bs = [...c.b, ...(tb ? [n, k] : [k, n])];
          const a = randn(r, size(as));
          const b = randn(r, size(bs));
          const ref = matmulRef(a, as, b, bs, ta, tb);
          const [got] = read(tf.tidy(() => tf.matMul(tf.tensor(a, as), tf.tensor(b, bs), ta, tb)));
          const what = `matMul ${JSON.stringify(as)}${ta ? 'ᵀ' : ''} x ${JSON.stringify(bs)}${tb ? 'ᵀ' : ''}`;
          assert.deepEqual(got!.shape, ref.shape, `${what}: shape`);
          assertClose(got!.data, ref.data, 1e-5, what);
        }
      }
    }
  }
});

// tfjs's matMul gradient does not reduce broadcast batch dims (on any backend), so gradients are
// compared for equal batch shapes only.
test('BatchMatMul gradients match the cpu backend (all transposes, with and without batch dims)', { skip }, async () => {
  const r = rng(2);
  for (const [ab, bb] of [[[], []], [[3], [3]], [[2, 3], [2, 3]]] as number[][][]) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const [m, k, n] = [5, 7, 3];
        const as = [...ab!, ...(ta ? [k, m] : [m, k])];
        const bs = [...bb!, ...(tb ? [n, k] : [k, n])];
        await compareWithCpu(`grad matMul ${JSON.stringify(as)} ${JSON.stringify(bs)} ${ta} ${tb}`, (x, y) => tf.matMul(x!, y!, ta, tb), [
          { data: randn(r, size(as)), shape: as },
          { data: randn(r, size(bs)), shape: bs },
        ]);
      }
    }
  }
});

test('_FusedMatMul: bias, ReLU, transposes and batches (vs float64; stock wasm is wrong here)', { skip }, () => {
  const r = rng(3);
  for (const [m, k, n] of [[1, 1, 1], [7, 5, 3], [33, 17, 65], [4, 0, 3]] as [number, number, number][]) {
    for (const batch of [1, 3]) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          for (const act of ['linear', 'relu'] as const) {
            const as = [batch, ...(ta ? [k, m] : [m, k])];
            const bs = [batch, ...(tb ? [n, k] : [k, n])];
            const a = randn(r, size(as));
            const b = randn(r, size(bs));
            const bias = randn(r, n);
            const ref = matmulRef(a, as, b, bs, ta, tb);
            const want = ref.data.map((v, i) => {
              const y = v + bias[i % n]!;
              return act === 'relu' ? Math.max(0, y) : y;
            });
            const [got] = read(
              tf.tidy(() => tf.fused.matMul({ a: tf.tensor3d(a, as as [number, number, number]), b: tf.tensor3d(b, bs as [number, number, number]), transposeA: ta, transposeB: tb, bias: tf.tensor1d(bias), activation: act })),
            );
            assert.deepEqual(got!.shape, ref.shape);
            assertClose(got!.data, want, 1e-5, `fused ${JSON.stringify(as)} ${JSON.stringify(bs)} ${ta} ${tb} ${act}`);
          }
        }
      }
    }
  }
});

// ---- elementwise, reductions, transpose ----------------------------------------------------

test('Exp matches the cpu backend, including overflow, underflow, NaN and empty tensors', { skip }, async () => {
  const r = rng(4);
  const special = Float32Array.from([0, -0, 1, -1, 88, 88.7, 89, -87, -87.5, -100, -1e9, 1e9, NaN, Infinity, -Infinity, 1e-30]);
  for (const shape of [[0], [1], [7], [3, 333], [16]]) {
    const data = shape[0] === 16 ? special : Float32Array.from(randn(r, size(shape)), (v) => v * 30);
    await compareWithCpu(`exp ${JSON.stringify(shape)}`, (x) => tf.exp(x!), [{ data, shape }], 1e-6);
  }
});

test('Sum, Mean, Max, Min over contiguous and other axes, keepDims, empty dims (values and gradients vs cpu)', { skip }, async () => {
  const r = rng(5);
  const shapes = [[7], [3, 5], [2, 3, 4], [5, 1, 6, 3], [4, 0, 3], [0, 5], [33, 130]];
  for (const shape of shapes) {
    const rank = shape.length;
    const axesList: (number | number[] | undefined)[] = [undefined, -1, 0];
    if (rank >= 2) axesList.push(1, [0, 1], [rank - 2, rank - 1]);
    if (rank >= 3) axesList.push([0, 2], [1, 2]);
    for (const axis of axesList) {
      for (const keep of [false, true]) {
        const data = randn(r, size(shape));
        const opts = { data, shape };
        const what = `${JSON.stringify(shape)} axis ${JSON.stringify(axis)} keep ${keep}`;
        await compareWithCpu(`sum ${what}`, (x) => tf.sum(x!, axis, keep), [opts], 1e-5);
        if (size(shape) > 0 || axis === undefined) {
          await compareWithCpu(`mean ${what}`, (x) => tf.mean(x!, axis, keep), [opts], 1e-5);
        }
        if (size(shape) > 0) {
          await compareWithCpu(`max ${what}`, (x) => tf.max(x!, axis, keep), [opts], 0);
          await compareWithCpu(`min ${what}`, (x) => tf.min(x!, axis, keep), [opts], 0);
        }
      }
    }
  }
  // NaN propagates through max/min
  const [mx] = read(tf.tidy(() => tf.max(tf.tensor2d([1, NaN, 3, 4, 5, 6, 7, 8, 9, 10], [1, 10]), 1)));
  assert.ok(Number.isNaN(mx!.data[0]));
});

test('Transpose: random permutations of ranks 1-5, odd sizes, int32 and float32, gradients', { skip }, async () => {
  const r = rng(6);
  const shapes = [[5], [3, 7], [2, 3, 4], [200, 21, 4, 8], [2, 3, 1, 5, 2], [3, 0, 2], [33, 65]];
  for (const shape of shapes) {
    const rank = shape.length;
    const perms: number[][] = [[...Array(rank).keys()].reverse()];
    for (let t = 0; t < 4; t++) perms.push([...Array(rank).keys()].sort(() => r() - 0.5));
    if (rank === 4) perms.push([0, 2, 1, 3]);
    for (const perm of perms) {
      const data = randn(r, size(shape));
      await compareWithCpu(`transpose ${JSON.stringify(shape)} ${JSON.stringify(perm)}`, (x) => tf.transpose(x!, perm), [{ data, shape }], 0);
      const ints = Int32Array.from(data, (v) => Math.round(v * 1000));
      const [got] = read(tf.tidy(() => tf.transpose(tf.tensor(ints, shape, 'int32'), perm)));
      const [want] = await onCpu(() => read(tf.tidy(() => tf.transpose(tf.tensor(ints, shape, 'int32'), perm))));
      assert.deepEqual(got, want, `int32 transpose ${JSON.stringify(shape)} ${JSON.stringify(perm)}`);
    }
  }
});

test('GatherV2: axes 0..rank-1, index tensors of rank 0-2, repeated and empty indices, int32 (values and gradients vs cpu)', { skip }, async () => {
  const r = rng(11);
  for (const shape of [[7], [5, 3], [4, 6, 2], [8000, 16], [3, 0, 2]]) {
    for (let axis = 0; axis < shape.length; axis++) {
      const dim = shape[axis]!;
      for (const ishape of [[], [4], [2, 3], [0]]) {
        if (dim === 0 && size(ishape) > 0) continue;
        const idx = Int32Array.from({ length: size(ishape) }, () => Math.floor(r() * dim));
        const data = randn(r, size(shape));
        const what = `gather ${JSON.stringify(shape)} axis ${axis} indices ${JSON.stringify(ishape)}`;
        if (size(ishape) > 0 && size(shape) > 0) {
          // (repeated indices: the gradient sums in another order)
          await compareWithCpu(what, (x) => tf.gather(x!, tf.tensor(idx, ishape, 'int32'), axis), [{ data, shape }], 1e-6);
        } else {
          // tfjs cpu's gather gradient fails on empty index sets; compare values only
          const [got] = read(tf.tidy(() => tf.gather(tf.tensor(data, shape), tf.tensor(idx, ishape, 'int32'), axis)));
          const [want] = await onCpu(() => read(tf.tidy(() => tf.gather(tf.tensor(data, shape), tf.tensor(idx, ishape, 'int32'), axis))));
          assert.deepEqual(got, want, what);
        }
        const ints = Int32Array.from(data, (v) => Math.round(v * 100));
        const [got] = read(tf.tidy(() => tf.gather(tf.tensor(ints, shape, 'int32'), tf.tensor(idx, ishape, 'int32'), axis)));
        const [want] = await onCpu(() => read(tf.tidy(() => tf.gather(tf.tensor(ints, shape, 'int32'), tf.tensor(idx, ishape, 'int32'), axis))));
        assert.deepEqual(got, want, `int32 ${what}`);
      }
    }
  }
});

// ---- zero-copy JS kernels (every wasm path) --------------------------------------------------

test('Identity and same-dtype Cast share the buffer and stay valid after the input is disposed', () => {
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = tf.clone(x);
  const z = tf.cast(x, 'float32');
  const w = tf.cast(x, 'int32');
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(Array.from(z.dataSync()), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(Array.from(w.dataSync()), [1, 2, 3, 4, 5, 6]);
  assert.equal(w.dtype, 'int32');
  const before = tf.memory().numTensors;
  tf.dispose([y, z, w]);
  assert.equal(tf.memory().numTensors, before - 3);
  // gradients through a clone still flow
  const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.clone(a), 2)))(tf.tensor1d([1, 2, 3]));
  assert.deepEqual(Array.from(g.dataSync()), [2, 2, 2]);
  g.dispose();
});

// ---- fused ops ------------------------------------------------------------------------------

/** torch.nn.LayerNorm as composed tf ops (the reference). */
function layerNormRef(x: tf.Tensor, w?: tf.Tensor, b?: tf.Tensor, eps = 1e-5): tf.Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const c = tf.sub(x, mean);
  let y = tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), axis, true), eps)));
  if (w) y = tf.mul(y, w);
  if (b) y = tf.add(y, b);
  return y;
}

test('layerNormOp equals composed tf ops (values and gradients), with and without affine parameters', async () => {
  const r = rng(7);
  for (const shape of [[1, 1], [3, 7], [2, 5, 33], [0, 4], [64, 512]]) {
    const cols = shape[shape.length - 1]!;
    const x = { data: Float32Array.from(randn(r, size(shape)), (v) => v * 3 + 1), shape };
    const w = { data: randn(r, cols), shape: [cols] };
    const b = { data: randn(r, cols), shape: [cols] };
    const ours = valueAndGrads((a, ww, bb) => layerNormOp(a!, ww as tf.Tensor1D, bb as tf.Tensor1D), [x, w, b]);
    const ref = await onCpu(() => valueAndGrads((a, ww, bb) => layerNormRef(a!, ww, bb), [x, w, b]));
    ours.forEach((o, i) => assertClose(o.data, ref[i]!.data, 2e-4, `layerNorm ${JSON.stringify(shape)} output ${i}`));
    const ours2 = valueAndGrads((a) => layerNormOp(a!), [x]);
    const ref2 = await onCpu(() => valueAndGrads((a) => layerNormRef(a!), [x]));
    ours2.forEach((o, i) => assertClose(o.data, ref2[i]!.data, 2e-4, `layerNorm (no affine) ${JSON.stringify(shape)} output ${i}`));
  }
});

test('dropoutMask reproduces the JS RNG loop bit for bit and leaves the RNG in the same state', () => {
  for (const [n, p] of [[1, 0.1], [1000, 0.3], [4097, 0.5], [0, 0.2]] as [number, number][]) {
    const a = new Rng(42);
    const b = new Rng(42);
    const mask = dropoutMask(a, [n], p);
    const threshold = Math.ceil(p * 16777216);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) if (b.nextUint32() >>> 8 >= threshold) want[i] = 1 / (1 - p);
    assert.deepEqual(Array.from(mask.dataSync()), Array.from(want), `mask n=${n} p=${p}`);
    // same state (the JS loop leaves some words as signed int32; setState normalises to uint32)
    assert.deepEqual(a.getState().map((w) => w >>> 0), b.getState().map((w) => w >>> 0), 'RNG state after the mask');
    assert.equal(a.nextUint32(), b.nextUint32(), 'the streams continue identically');
    mask.dispose();
  }
});

test('applyDropoutMask and addDropoutMasked: values and gradients of x * mask and r + x * mask', async () => {
  const r = rng(8);
  const shape = [5, 7];
  const x = { data: randn(r, 35), shape };
  const res = { data: randn(r, 35), shape };
  const m = Float32Array.from({ length: 35 }, () => (r() < 0.3 ? 0 : 1 / 0.7));
  const ours = valueAndGrads((a, c) => addDropoutMasked(c!, applyDropoutMask(a!, tf.tensor(m, shape)), tf.onesLike(a!)), [x, res]);
  const ref = await onCpu(() => valueAndGrads((a, c) => tf.add(c!, tf.mul(a!, tf.tensor(m, shape))), [x, res]));
  ours.forEach((o, i) => assertClose(o.data, ref[i]!.data, 1e-6, `dropout output ${i}`));
});

/** fairseq's label-smoothed terms as composed tf ops (the criterion's formula). */
function xentRef(lg: tf.Tensor2D, t: tf.Tensor1D, eps: number): tf.Tensor {
  const [n, v] = lg.shape;
  const lse = tf.logSumExp(lg, 1);
  // (tf.oneHot needs depth >= 2; the cpu gather gradient fails on empty batches)
  const tl = v === 1 ? tf.reshape(lg, [n]) : tf.sum(tf.mul(lg, tf.oneHot(t, v)), 1);
  const nll = tf.sub(lse, tl);
  const smooth = tf.sub(tf.mul(lse, v), tf.sum(lg, 1));
  return tf.stack([tf.add(tf.mul(nll, 1 - eps), tf.mul(smooth, eps / v)), nll]);
}

test('nativeSmoothedXentTerms equals the composed formula (values and logits gradient)', { skip }, async () => {
  const r = rng(9);
  for (const [n, v, eps] of [[1, 1, 0], [5, 7, 0.1], [33, 1000, 0.1], [0, 5, 0.1], [17, 8000, 0.2]] as [number, number, number][]) {
    const lg = { data: Float32Array.from(randn(r, n * v), (x) => x * 8), shape: [n, v] };
    const t = Int32Array.from({ length: n }, () => Math.floor(r() * v));
    const ours = valueAndGrads((a) => nativeSmoothedXentTerms(a as tf.Tensor2D, tf.tensor1d(t, 'int32'), eps)!, [lg]);
    const ref = await onCpu(() => valueAndGrads((a) => xentRef(a as tf.Tensor2D, tf.tensor1d(t, 'int32'), eps), [lg]));
    ours.forEach((o, i) => assertClose(o.data, ref[i]!.data, 1e-4, `xent n=${n} v=${v} output ${i}`));
  }
});

test('nativeAdamStep is bit-identical to the tf-ops Adam update; nativeSumSquares matches', { skip }, () => {
  const r = rng(10);
  for (const n of [1, 7, 1000, 0]) {
    const [p, m, v, g] = [0, 1, 2, 3].map((i) => tf.tensor1d(Float32Array.from(randn(r, n), (x) => (i === 2 ? Math.abs(x) : x))));
    for (const decay of [1, 1 - 1e-4 * 5e-4]) {
      const hp = { b1: 0.9, b2: 0.98, eps: 1e-8, stepSize: 3e-4, decay, gradScale: 1 };
      const fused = nativeAdamStep(p!, m!, v!, g!, hp)!;
      const ref = tf.tidy(() => {
        const m1 = m!.mul(hp.b1).add(g!.mul(1 - hp.b1));
        const v1 = v!.mul(hp.b2).add(g!.square().mul(1 - hp.b2));
        const base = decay !== 1 ? p!.mul(decay) : p!;
        return [base.sub(m1.div(v1.sqrt().add(hp.eps)).mul(hp.stepSize)), m1, v1];
      });
      fused.forEach((t, i) => assert.deepEqual(Array.from(t.dataSync()), Array.from(ref[i]!.dataSync()), `adam n=${n} output ${i}`));
      tf.dispose([...fused, ...ref]);
    }
    const want = [p!, g!].reduce((s, t) => s + Array.from(t.dataSync()).reduce((a, x) => a + x * x, 0), 0);
    const got = nativeSumSquares([p!, g!])!;
    assert.ok(Math.abs(got - want) <= 1e-6 * Math.max(1, want), `sumSquares ${got} vs ${want}`);
    tf.dispose([p!, m!, v!, g!]);
  }
});

test('the replaced kernels leak no tensors', { skip }, () => {
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    const a = tf.randomNormal([3, 4, 5]);
    const b = tf.randomNormal([3, 5, 2]);
    tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.exp(tf.transpose(tf.matMul(x, y), [0, 2, 1]))))([a, b]);
    layerNormOp(a);
    tf.max(a, 1);
  });
  assert.equal(tf.memory().numTensors, before);
});

test('variableGradsLowMemory gives the same value and gradients as tf.variableGrads, frees everything, and falls back inside a tape', () => {
  const r = rng(12);
  const w1 = tf.variable(tf.tensor2d(randn(r, 12), [4, 3]), true, 'lowmem.w1');
  const w2 = tf.variable(tf.tensor2d(randn(r, 6), [3, 2]), true, 'lowmem.w2');
  const b = tf.variable(tf.tensor1d(randn(r, 2)), true, 'lowmem.b');
  const frozen = tf.variable(tf.tensor1d(randn(r, 2)), false, 'lowmem.frozen');
  const unused = tf.variable(tf.tensor1d(randn(r, 2)), true, 'lowmem.unused');
  const x = tf.tensor2d(randn(r, 20), [5, 4]);
  // shared intermediates, a tensor used twice, broadcasting, a reshape, a custom gradient
  const loss = (): tf.Scalar =>
    tf.tidy(() => {
      const h = tf.relu(tf.matMul(x, w1));
      const y = tf.add(tf.matMul(tf.add(h, h), w2), b);
      const z = layerNormOp(tf.reshape(tf.mul(y, frozen), [10, 1]).reshape([5, 2]));
      return tf.sum(tf.mul(z, tf.add(y, 1)));
    });
  const vars = [w1, w2, b, frozen, unused];
  const before = tf.memory().numTensors;
  const ref = tf.variableGrads(loss, vars);
  const ours = variableGradsLowMemory(loss, vars);
  assert.equal(ours.value.dataSync()[0], ref.value.dataSync()[0]);
  assert.deepEqual(Object.keys(ours.grads).sort(), Object.keys(ref.grads).filter((k) => ref.grads[k] != null).sort());
  for (const k of Object.keys(ours.grads)) assert.deepEqual(Array.from(ours.grads[k]!.dataSync()), Array.from(ref.grads[k]!.dataSync()), k);
  tf.dispose([ours.value, ref.value, ...Object.values(ours.grads), ...Object.values(ref.grads).filter((g): g is tf.Tensor => g != null)]);
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  // inside another gradient computation it defers to tfjs (higher-order gradients)
  const g = tf.grad((s: tf.Tensor) => {
    const inner = variableGradsLowMemory(() => tf.sum(tf.mul(w2, s)) as tf.Scalar, [w2]);
    return tf.sum(inner.grads['lowmem.w2']!);
  })(tf.scalar(2));
  assert.equal(g.dataSync()[0], 6);
  tf.dispose([g, x, ...vars]);
});

test('OpenBLAS core type: chosen only from instructions the CPU reports', () => {
  const cpu = (flags: string): string => `processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\n`;
  const skx = 'fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl';
  assert.equal(chooseOpenBlasCoreType(cpu(skx)), 'SkylakeX');
  assert.equal(chooseOpenBlasCoreType(cpu('fpu sse sse2 avx avx2 fma avx512f')), 'Haswell'); // partial AVX-512 (Knights-style)
  assert.equal(chooseOpenBlasCoreType(cpu('fpu sse sse2 avx avx2 fma')), 'Haswell');
  assert.equal(chooseOpenBlasCoreType(cpu('fpu sse sse2 avx')), undefined);
  assert.equal(chooseOpenBlasCoreType('no flags line here'), undefined);
});
