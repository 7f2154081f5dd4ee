/**
 * Native CPU kernels for the tfjs `wasm` backend: an optional C addon (native/, OpenBLAS) whose
 * functions work IN PLACE on the wasm heap, registered as replacements of wasm kernels.
 *
 * Why: tfjs-wasm's matmul is fast only for plain 2-D products (XNNPACK, 128-bit SIMD, one
 * thread); transposed or batched ones run on a scalar loop. OpenBLAS sgemm takes transpose flags
 * and batch strides directly and runs several times faster (docs/backend-notes.md). Kernels work
 * on tensor memory where it lies: JS reads byte offsets from the backend's data map, allocates
 * outputs first (heap growth detaches older views), then hands the heap's Uint8Array view and the
 * offsets to C. Every replacement keeps the original kernel (tf.getKernel) and falls back to it
 * for cases it does not handle (dtypes, shapes, activations), so behaviour never narrows.
 *
 * Also here, plain-JS kernels that need no addon (registered on every wasm path):
 *   - Identity and same-dtype Cast share the input's buffer instead of copying it. The engine
 *     clones every tensor it saves for backprop through Identity, so on stock wasm each saved
 *     activation is a full copy; sharing halves the training memory.
 *   - Reshape and Relu gradients that keep less alive (see registerLeanGradients).
 *
 * Switches (environment, read once):
 *   DIFFORMER_NATIVE=0            never load the addon (plain wasm; the JS kernels stay)
 *   DIFFORMER_NATIVE_DISABLE=a,b  skip these replacements (kernel names, `gradients`, `js` for
 *                                 all addon-free ones, or `all`), to
 *                                 measure each step (bench/README.md) or to bisect a problem
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** What the C addon exports (native/src/difformer_native.c documents each parameter block). */
interface NativeAddon {
  gemm(heap: Uint8Array, p: Float64Array): void;
  unary(heap: Uint8Array, p: Float64Array): void;
  reduce(heap: Uint8Array, p: Float64Array): void;
  transpose(heap: Uint8Array, p: Float64Array): void;
  gather(heap: Uint8Array, p: Float64Array): boolean;
  layerNorm(heap: Uint8Array, p: Float64Array): void;
  layerNormGrad(heap: Uint8Array, p: Float64Array): void;
  dropoutMask(heap: Uint8Array, p: Float64Array, state: Uint32Array): void;
  adam(heap: Uint8Array, p: Float64Array): void;
  sumSquares(heap: Uint8Array, p: Float64Array): number;
  xentLse(heap: Uint8Array, p: Float64Array): void;
  xentGrad(heap: Uint8Array, p: Float64Array): void;
  setThreads(n: number): void;
  info(): { config: string; corename: string; threads: number; abi: number };
}

/** The outcome of `registerNativeKernels`, for the backend's log line and reason string. */
export interface NativeKernelsStatus {
  /** The addon loaded and its kernels are registered. */
  native: boolean;
  /** Why not, or what loaded (OpenBLAS core and threads). */
  detail: string;
  /** Names of the replaced wasm kernels (native and JS). */
  kernels: string[];
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
type KernelImpl = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

const ABI = 1;
/** Every function the kernels below call; a build lacking one is stale. */
const ADDON_FUNCTIONS = ['gemm', 'unary', 'reduce', 'transpose', 'gather', 'layerNorm', 'layerNormGrad', 'dropoutMask', 'adam', 'sumSquares', 'xentLse', 'xentGrad', 'setThreads', 'info'];
const require = createRequire(import.meta.url);

let addon: NativeAddon | undefined;
let status: NativeKernelsStatus | undefined;

/** The addon's .node file: native/build/Release under the package root (from src/ or dist/src/). */
function addonPath(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'native', 'build', 'Release', 'difformer_native.node');
    if (existsSync(p)) return p;
    if (existsSync(join(dir, 'package.json'))) return undefined;
    dir = dirname(dir);
  }
  return undefined;
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0] ?? '';
}

/**
 * OpenBLAS kernel family for this CPU, when the variable is unset. Debian's OpenBLAS 0.3.21 does
 * not recognise newer CPUs (e.g. Sapphire Rapids under KVM) and falls back to generic Prescott
 * kernels, ~4x slower on GEMM; its dynamic-arch loader reads OPENBLAS_CORETYPE once, when the
 * library is loaded, so it must be set before the addon is required. Only families whose
 * instructions the CPU reports are chosen; a user's own setting always wins.
 */
export function chooseOpenBlasCoreType(cpuinfo: string): string | undefined {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512cd'].every((f) => flags.has(f))) return 'SkylakeX';
  if (['avx2', 'fma'].every((f) => flags.has(f))) return 'Haswell';
  return undefined;
}

function setOpenBlasCoreType(): void {
  if (process.env['OPENBLAS_CORETYPE'] !== undefined) return;
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return; // not Linux: OpenBLAS detects the CPU itself
  }
  const core = chooseOpenBlasCoreType(cpuinfo);
  if (core !== undefined) process.env['OPENBLAS_CORETYPE'] = core;
}

/** Loads the addon, or says why not. */
function loadAddon(): NativeAddon | string {
  if (process.env['DIFFORMER_NATIVE'] === '0') return 'disabled by DIFFORMER_NATIVE=0';
  const path = addonPath();
  if (path === undefined) return 'not built: run `npm run build:native` (needs a C compiler and libopenblas-dev)';
  setOpenBlasCoreType();
  try {
    const a = require(path) as NativeAddon;
    const info = a.info();
    const missing = ADDON_FUNCTIONS.filter((f) => typeof (a as unknown as Record<string, unknown>)[f] !== 'function');
    if (info.abi !== ABI || missing.length > 0) return `stale build (missing ${missing.join(', ') || `abi ${ABI}`}): run \`npm run build:native\``;
    return a;
  } catch (e) {
    return `failed to load ${path}: ${firstLine(e)}`;
  }
}

/** The addon, when loaded (tests and benchmarks use it directly). */
export function nativeAddon(): NativeAddon | undefined {
  return addon;
}

let gemmReplaced = false;
const fused = new Set<string>();

/** True when our fused kernel `name` can run now (wasm backend, addon loaded, not disabled). */
function fusedActive(name: string): boolean {
  return fused.has(name) && tf.getBackend() === 'wasm';
}

/**
 * True when matMuls run on the native GEMM now: it takes transpose flags and batch strides at
 * full speed, so callers (src/nn/linear.ts) can skip the explicit transposes that stock wasm needs.
 */
export function nativeMatMulActive(): boolean {
  return gemmReplaced && tf.getBackend() === 'wasm';
}

// ---- heap access --------------------------------------------------------------------------

function wasmBackend(b: unknown): BackendWasm {
  return b as BackendWasm;
}

/** Byte offset of a tensor's data on the wasm heap. */
function offsetOf(backend: BackendWasm, t: tf.TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined || d.memoryOffset === null || d.memoryOffset === undefined) throw new Error('native kernels: tensor has no heap memory');
  return d.memoryOffset;
}

/** The heap view, taken after any allocation of the call (growth detaches old views). */
function heap(backend: BackendWasm): Uint8Array {
  return backend.wasm.HEAPU8;
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** numpy broadcast of two shapes, or undefined when incompatible. */
function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/**
 * Element offsets of each batch matrix of x (batch dims `dims`) for every index of the broadcast
 * batch shape `outDims` (size-1 dims repeat). matSize = elements per matrix.
 */
function batchOffsets(dims: readonly number[], outDims: readonly number[], matSize: number): Float64Array {
  const total = size(outDims);
  const out = new Float64Array(total);
  const rank = outDims.length;
  const strides = new Array<number>(rank).fill(0);
  let s = matSize;
  for (let i = rank - 1; i >= 0; i--) {
    const d = dims[dims.length - rank + i] ?? 1;
    strides[i] = d === 1 ? 0 : s;
    s *= d;
  }
  const idx = new Array<number>(rank).fill(0);
  let off = 0;
  for (let k = 0; k < total; k++) {
    out[k] = off;
    for (let i = rank - 1; i >= 0; i--) {
      idx[i]!++;
      off += strides[i]!;
      if (idx[i]! < outDims[i]!) break;
      off -= strides[i]! * idx[i]!;
      idx[i] = 0;
    }
  }
  return out;
}

// ---- GEMM kernels -------------------------------------------------------------------------

interface GemmPlan {
  outShape: number[];
  m: number;
  n: number;
  k: number;
  aOffs: Float64Array;
  bOffs: Float64Array;
  batch: number;
}

/** Shapes of a (transposed?) x b (transposed?) with numpy batch broadcasting, or undefined. */
function planGemm(a: tf.TensorInfo, b: tf.TensorInfo, ta: boolean, tb: boolean): GemmPlan | undefined {
  const ar = a.shape.length;
  const br = b.shape.length;
  if (ar < 2 || br < 2) return undefined;
  const m = ta ? a.shape[ar - 1]! : a.shape[ar - 2]!;
  const k = ta ? a.shape[ar - 2]! : a.shape[ar - 1]!;
  const kb = tb ? b.shape[br - 1]! : b.shape[br - 2]!;
  const n = tb ? b.shape[br - 2]! : b.shape[br - 1]!;
  if (k !== kb) return undefined;
  const aDims = a.shape.slice(0, -2);
  const bDims = b.shape.slice(0, -2);
  const outDims = broadcastShapes(aDims, bDims);
  if (outDims === undefined) return undefined;
  const batch = size(outDims);
  return {
    outShape: [...outDims, m, n],
    m,
    n,
    k,
    batch,
    aOffs: batchOffsets(aDims, outDims, m * k),
    bOffs: batchOffsets(bDims, outDims, k * n),
  };
}

/** Runs the plan: out = op(a) op(b) (+ bias row) (ReLU). */
function runGemm(backend: BackendWasm, a: tf.TensorInfo, b: tf.TensorInfo, ta: boolean, tb: boolean, plan: GemmPlan, bias: tf.TensorInfo | undefined, relu: boolean): tf.TensorInfo {
  const out = backend.makeOutput(plan.outShape, 'float32');
  if (plan.batch === 0 || plan.m === 0 || plan.n === 0) return out;
  const aOff = offsetOf(backend, a);
  const bOff = offsetOf(backend, b);
  const cOff = offsetOf(backend, out);
  const { m, n, k, batch } = plan;
  const p = new Float64Array(13 + 3 * batch);
  // BLAS wants leading dimensions >= 1 even for empty matrices.
  const ld = (d: number): number => Math.max(1, d);
  p.set([ta ? 1 : 0, tb ? 1 : 0, m, n, k, 1, 0, ld(ta ? m : k), ld(tb ? k : n), ld(n), bias === undefined ? -1 : offsetOf(backend, bias), relu ? 1 : 0, batch]);
  for (let i = 0; i < batch; i++) {
    p[13 + 3 * i] = aOff + 4 * plan.aOffs[i]!;
    p[14 + 3 * i] = bOff + 4 * plan.bOffs[i]!;
    p[15 + 3 * i] = cOff + 4 * i * m * n;
  }
  addon!.gemm(heap(backend), p);
  return out;
}

function batchMatMulKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const ta = args.attrs?.['transposeA'] === true;
    const tb = args.attrs?.['transposeB'] === true;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const plan = planGemm(a, b, ta, tb);
    if (plan === undefined) return original(args); // the original reports the shape error
    return runGemm(wasmBackend(args.backend), a, b, ta, tb, plan, undefined, false);
  };
}

function fusedMatMulKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const ta = args.attrs?.['transposeA'] === true;
    const tb = args.attrs?.['transposeB'] === true;
    const activation = args.attrs?.['activation'] ?? 'linear';
    if (a === undefined || b === undefined || a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    if ((activation !== 'linear' && activation !== 'relu') || preluActivationWeights !== undefined) return original(args);
    const plan = planGemm(a, b, ta, tb);
    if (plan === undefined) return original(args);
    // A bias we add per row: one value per output column (shape [N], [1, N], ...).
    if (bias !== undefined && (bias.dtype !== 'float32' || size(bias.shape) !== plan.n || (bias.shape.length > 0 && bias.shape[bias.shape.length - 1] !== plan.n))) {
      return original(args);
    }
    return runGemm(wasmBackend(args.backend), a, b, ta, tb, plan, bias, activation === 'relu');
  };
}

// ---- elementwise, reductions, transpose ---------------------------------------------------

const UNARY_OPS: Record<string, number> = { Exp: 0 };

function unaryKernel(name: string): (original: KernelImpl) => KernelImpl {
  const op = UNARY_OPS[name]!;
  return (original) => (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype !== 'float32') return original(args);
    const backend = wasmBackend(args.backend);
    const out = backend.makeOutput(x.shape, 'float32');
    const n = size(x.shape);
    if (n > 0) addon!.unary(heap(backend), new Float64Array([op, n, offsetOf(backend, x), offsetOf(backend, out)]));
    return out;
  };
}

/** Normalised, sorted reduction axes if they form one contiguous run, else undefined. */
function contiguousAxes(axis: unknown, rank: number): number[] | undefined {
  const raw = Array.isArray(axis) ? (axis as number[]) : axis === undefined || axis === null ? [...Array(rank).keys()] : [axis as number];
  const axes = [...new Set(raw.map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
  if (axes.length === 0 || axes.some((a) => !Number.isInteger(a) || a < 0 || a >= rank)) return undefined;
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1]! + 1) return undefined;
  return axes;
}

const REDUCE_OPS: Record<string, { op: number; axisAttr: string }> = {
  Sum: { op: 0, axisAttr: 'axis' },
  Mean: { op: 1, axisAttr: 'axis' },
  Max: { op: 2, axisAttr: 'reductionIndices' },
  Min: { op: 3, axisAttr: 'axis' },
};

/** Reductions over one contiguous run of axes: x as [outer, reduced, inner], no transposes. */
function reduceKernel(name: string): (original: KernelImpl) => KernelImpl {
  const { op, axisAttr } = REDUCE_OPS[name]!;
  return (original) => (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype !== 'float32') return original(args);
    const axes = contiguousAxes(args.attrs?.[axisAttr], x.shape.length);
    if (axes === undefined) return original(args);
    const first = axes[0]!;
    const last = axes[axes.length - 1]!;
    const outer = size(x.shape.slice(0, first));
    const red = size(x.shape.slice(first, last + 1));
    const inner = size(x.shape.slice(last + 1));
    const keep = args.attrs?.['keepDims'] === true;
    const outShape = keep ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d)) : x.shape.filter((_, i) => i < first || i > last);
    const backend = wasmBackend(args.backend);
    const out = backend.makeOutput(outShape, 'float32');
    if (outer * inner > 0) addon!.reduce(heap(backend), new Float64Array([op, outer, red, inner, offsetOf(backend, x), offsetOf(backend, out)]));
    return out;
  };
}

function transposeKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    const perm = args.attrs?.['perm'] as number[] | undefined;
    const rank = x.shape.length;
    if ((x.dtype !== 'float32' && x.dtype !== 'int32') || perm === undefined || perm.length !== rank || rank > 8) return original(args);
    if (new Set(perm).size !== rank || perm.some((q) => !Number.isInteger(q) || q < 0 || q >= rank)) return original(args);
    const backend = wasmBackend(args.backend);
    const out = backend.makeOutput(perm.map((q) => x.shape[q]!), x.dtype);
    if (size(x.shape) > 0) addon!.transpose(heap(backend), new Float64Array([rank, offsetOf(backend, x), offsetOf(backend, out), ...x.shape, ...perm]));
    return out;
  };
}

/** GatherV2 (batchDims 0) as row copies; falls back for other dtypes or out-of-range indices. */
function gatherKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const batchDims = Number(args.attrs?.['batchDims'] ?? 0);
    const rank = x.shape.length;
    let axis = Number(args.attrs?.['axis'] ?? 0);
    if (axis < 0) axis += rank;
    if ((x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32' || batchDims !== 0 || !(axis >= 0 && axis < rank)) return original(args);
    const outShape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
    const backend = wasmBackend(args.backend);
    const out = backend.makeOutput(outShape, x.dtype);
    if (size(outShape) === 0) return out;
    const ok = addon!.gather(heap(backend), new Float64Array([
      size(x.shape.slice(0, axis)), x.shape[axis]!, size(x.shape.slice(axis + 1)), size(indices.shape),
      offsetOf(backend, x), offsetOf(backend, indices), offsetOf(backend, out),
    ]));
    if (ok) return out;
    backend.disposeData(out.dataId);
    return original(args);
  };
}

// ---- zero-copy JS kernels -----------------------------------------------------------------

/** Output sharing x's buffer (the backend refcounts data ids, as wasm's own Reshape does). */
function shareBuffer(backend: BackendWasm, x: tf.TensorInfo): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

function identityKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype === 'string') return original(args);
    return shareBuffer(wasmBackend(args.backend), x);
  };
}

function castKernel(original: KernelImpl): KernelImpl {
  return (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype !== args.attrs?.['dtype'] || x.dtype === 'string') return original(args);
    return shareBuffer(wasmBackend(args.backend), x);
  };
}

// ---- fused kernels of our own (called by the ops below, only on wasm + native) ---------------

/** Offset of an optional input, -1 when absent. */
function optOffset(backend: BackendWasm, t: tf.TensorInfo | undefined): number {
  return t === undefined ? -1 : offsetOf(backend, t);
}

/** [y, xhat, rstd] = layer norm of x over its last axis (xhat, rstd: what the gradient needs). */
const layerNormKernel: KernelImpl = (args) => {
  const { x, weight, bias } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const backend = wasmBackend(args.backend);
  const shape = x!.shape;
  const cols = shape[shape.length - 1]!;
  const rows = size(shape) / cols;
  const y = backend.makeOutput(shape, 'float32');
  const xhat = backend.makeOutput(shape, 'float32');
  const rstd = backend.makeOutput([rows], 'float32');
  if (rows > 0) {
    addon!.layerNorm(heap(backend), new Float64Array([
      rows, cols, Number(args.attrs?.['eps']), offsetOf(backend, x!), optOffset(backend, weight), optOffset(backend, bias),
      offsetOf(backend, y), offsetOf(backend, xhat), offsetOf(backend, rstd),
    ]));
  }
  return [y, xhat, rstd];
};

/** [dx, dweight?, dbias?] of the layer norm above, from dy, xhat, rstd (and weight). */
const layerNormGradKernel: KernelImpl = (args) => {
  const { dy, xhat, rstd, weight } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const backend = wasmBackend(args.backend);
  const shape = dy!.shape;
  const cols = shape[shape.length - 1]!;
  const rows = size(shape) / cols;
  const dx = backend.makeOutput(shape, 'float32');
  const outs = [dx];
  const dw = weight !== undefined ? backend.makeOutput([cols], 'float32') : undefined;
  const db = args.attrs?.['hasBias'] === true ? backend.makeOutput([cols], 'float32') : undefined;
  if (dw !== undefined) outs.push(dw);
  if (db !== undefined) outs.push(db);
  addon!.layerNormGrad(heap(backend), new Float64Array([
    rows, cols, offsetOf(backend, dy!), offsetOf(backend, xhat!), offsetOf(backend, rstd!), optOffset(backend, weight),
    offsetOf(backend, dx), optOffset(backend, dw), optOffset(backend, db),
  ]));
  return outs;
};

/** A dropout mask from the model's RNG state (attrs.state, advanced in place). */
const dropoutMaskKernel: KernelImpl = (args) => {
  const backend = wasmBackend(args.backend);
  const shape = args.attrs?.['shape'] as number[];
  const state = args.attrs?.['state'] as Uint32Array;
  const mask = backend.makeOutput(shape, 'float32');
  addon!.dropoutMask(heap(backend), new Float64Array([size(shape), offsetOf(backend, mask), Number(args.attrs?.['threshold']), Number(args.attrs?.['scale'])]), state);
  return mask;
};

/** [p', m', v'] of one Adam step (see native/src/difformer_native.c `adam` for the formula). */
const adamKernel: KernelImpl = (args) => {
  const { p, m, v, g } = args.inputs as Record<string, tf.TensorInfo>;
  const a = args.attrs as Record<string, number>;
  const backend = wasmBackend(args.backend);
  const outs = [backend.makeOutput(p!.shape, 'float32'), backend.makeOutput(p!.shape, 'float32'), backend.makeOutput(p!.shape, 'float32')];
  const n = size(p!.shape);
  if (n > 0) {
    addon!.adam(heap(backend), new Float64Array([
      n, offsetOf(backend, p!), offsetOf(backend, m!), offsetOf(backend, v!), offsetOf(backend, g!),
      offsetOf(backend, outs[0]!), offsetOf(backend, outs[1]!), offsetOf(backend, outs[2]!),
      a['b1']!, 1 - a['b1']!, a['b2']!, 1 - a['b2']!, a['eps']!, a['stepSize']!, a['decay']!, a['gradScale']!,
    ]));
  }
  return outs;
};

/** [lse, targetLogit, rowSum] per row of logits [N, V] (int32 targets [N]). */
const xentForwardKernel: KernelImpl = (args) => {
  const { logits, target } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = wasmBackend(args.backend);
  const [n, v] = logits!.shape as [number, number];
  const outs = [backend.makeOutput([n], 'float32'), backend.makeOutput([n], 'float32'), backend.makeOutput([n], 'float32')];
  if (n > 0) {
    addon!.xentLse(heap(backend), new Float64Array([
      n, v, offsetOf(backend, logits!), offsetOf(backend, target!), offsetOf(backend, outs[0]!), offsetOf(backend, outs[1]!), offsetOf(backend, outs[2]!),
    ]));
  }
  return outs;
};

/** d[r, j] = exp(x[r, j] - lse[r]) a[r] - [j == t[r]] b[r] - c[r]. */
const xentGradKernel: KernelImpl = (args) => {
  const { logits, lse, target, a, b, c } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = wasmBackend(args.backend);
  const [n, v] = logits!.shape as [number, number];
  const d = backend.makeOutput([n, v], 'float32');
  if (n > 0) {
    addon!.xentGrad(heap(backend), new Float64Array([
      n, v, offsetOf(backend, logits!), offsetOf(backend, lse!), offsetOf(backend, target!), offsetOf(backend, a!), offsetOf(backend, b!), offsetOf(backend, c!), offsetOf(backend, d),
    ]));
  }
  return d;
};

/** Our own kernel names (registered for wasm only when the addon loaded). */
const FUSED_KERNELS: [string, KernelImpl][] = [
  ['DifformerLayerNorm', layerNormKernel],
  ['DifformerLayerNormGrad', layerNormGradKernel],
  ['DifformerDropoutMask', dropoutMaskKernel],
  ['DifformerAdam', adamKernel],
  ['DifformerXent', xentForwardKernel],
  ['DifformerXentGrad', xentGradKernel],
];

// ---- leaner gradients (what the tape keeps alive) ------------------------------------------

/** Where the Reshape kernels leave their input shape for the gradient (on the op's attrs object). */
const RESHAPE_IN_SHAPE = Symbol('difformer.reshapeInputShape');

/**
 * tfjs's Reshape gradient saves the whole input tensor only to read its shape; in a Transformer
 * that keeps ~a quarter of all activations alive until backprop (q/k/v projections before the
 * head split, attention contexts). Instead the Reshape kernels record the input shape on the
 * op's attrs object, which the engine hands to the gradient function, and nothing is saved.
 * Relu's gradient saves its output instead of its input (same mask: y > 0 iff x > 0), which the
 * next layer keeps anyway. Registered for the cpu and wasm backends together (the gradient
 * registry is global; tests switch between the two).
 */
function registerLeanGradients(): boolean {
  const backends = ['wasm', 'cpu'];
  const configs = backends.map((b) => tf.getKernel('Reshape', b) as tf.KernelConfig | undefined);
  if (configs.some((c) => c === undefined)) return false;
  configs.forEach((cfg, i) => {
    const original = cfg!.kernelFunc as unknown as KernelImpl;
    tf.unregisterKernel('Reshape', backends[i]!);
    tf.registerKernel({
      ...cfg!,
      kernelFunc: ((args: KernelArgs) => {
        const x = (args.inputs as { x: tf.TensorInfo }).x;
        if (args.attrs !== undefined) (args.attrs as Record<symbol, unknown>)[RESHAPE_IN_SHAPE] = x.shape.slice();
        return original(args);
      }) as unknown as tf.KernelFunc,
    });
  });
  tf.registerGradient({
    kernelName: 'Reshape',
    inputsToSave: [],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], _saved: tf.Tensor[], attrs?: tf.NamedAttrMap) => {
      const shape = (attrs as Record<symbol, unknown> | undefined)?.[RESHAPE_IN_SHAPE] as number[] | undefined;
      if (shape === undefined) throw new Error(`Reshape gradient: input shape not recorded (backend ${tf.getBackend()} lacks difformer's Reshape wrapper)`);
      return { x: () => tf.reshape(dy as tf.Tensor, shape) };
    },
  });
  tf.registerGradient({
    kernelName: 'Relu',
    outputsToSave: [true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.cast(tf.step(saved[0]!), 'float32')) }),
  });
  return true;
}

// ---- registration -------------------------------------------------------------------------

/** Kernel replacements: [name, needs the addon, factory over the original kernel]. */
const REPLACEMENTS: [string, boolean, (original: KernelImpl) => KernelImpl][] = [
  ['Identity', false, identityKernel],
  ['Cast', false, castKernel],
  ['BatchMatMul', true, batchMatMulKernel],
  ['_FusedMatMul', true, fusedMatMulKernel],
  ['Exp', true, unaryKernel('Exp')],
  ['Sum', true, reduceKernel('Sum')],
  ['Mean', true, reduceKernel('Mean')],
  ['Max', true, reduceKernel('Max')],
  ['Min', true, reduceKernel('Min')],
  ['Transpose', true, transposeKernel],
  ['GatherV2', true, gatherKernel],
];

/** Replaces one wasm kernel, keeping its setupFunc (which wires the original's wasm export). */
function replaceKernel(name: string, factory: (original: KernelImpl) => KernelImpl): boolean {
  const cfg = tf.getKernel(name, 'wasm') as tf.KernelConfig | undefined;
  if (cfg === undefined) return false;
  const original = cfg.kernelFunc as unknown as KernelImpl;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...cfg, kernelFunc: factory(original) as unknown as tf.KernelFunc });
  return true;
}

/**
 * Loads the addon (optional) and registers the replacement wasm kernels. Idempotent; call it
 * before `tf.setBackend('wasm')` (kernel setup functions run when the backend is created).
 * `threads` sets OpenBLAS's pool size (default: its own, OPENBLAS_NUM_THREADS or the cores).
 */
export function registerNativeKernels(opts: { threads?: number } = {}): NativeKernelsStatus {
  if (status !== undefined) return status;
  const disabled = new Set((process.env['DIFFORMER_NATIVE_DISABLE'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''));
  const loaded = loadAddon();
  let detail: string;
  if (typeof loaded === 'string') {
    detail = loaded;
  } else {
    addon = loaded;
    if (opts.threads !== undefined) addon.setThreads(opts.threads);
    const info = addon.info();
    detail = `OpenBLAS ${info.corename}, ${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  }
  const kernels: string[] = [];
  for (const [name, needsAddon, factory] of REPLACEMENTS) {
    if (disabled.has('all') || disabled.has(name) || (!needsAddon && disabled.has('js'))) continue;
    if (needsAddon && addon === undefined) continue;
    if (replaceKernel(name, factory)) kernels.push(name);
  }
  if (!disabled.has('all') && !disabled.has('js') && !disabled.has('gradients') && registerLeanGradients()) kernels.push('Reshape/Relu gradients');
  if (addon !== undefined) {
    for (const [name, impl] of FUSED_KERNELS) {
      if (disabled.has('all') || disabled.has(name)) continue;
      if (tf.getKernel(name, 'wasm') === undefined) tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: impl as unknown as tf.KernelFunc });
      fused.add(name);
      kernels.push(name);
    }
  }
  gemmReplaced = kernels.includes('BatchMatMul') && kernels.includes('_FusedMatMul');
  status = { native: addon !== undefined, detail, kernels };
  return status;
}

// ---- fused ops for the model code (any backend; native kernels when active) ---------------

type Save = tf.GradSaveFunc;
const LN_CACHE = new Map<string, (...args: tf.Tensor[]) => tf.Tensor>();

/**
 * Layer norm over the last axis (torch.nn.LayerNorm: biased variance, eps inside the root) as
 * ONE op with its own gradient. The tape keeps only xhat and the per-row 1/std, where composing
 * tf ops keeps five activation-sized tensors (mean's input, the centred and squared values,
 * the normalised and the scaled ones) and runs ~30 kernels fwd+bwd. Native kernels when active,
 * else the same formulas as tf ops (which still saves the memory).
 */
export function layerNormOp<T extends tf.Tensor>(x: T, weight?: tf.Tensor1D, bias?: tf.Tensor1D, eps = 1e-5): T {
  const key = `${weight !== undefined ? 'w' : ''}${bias !== undefined ? 'b' : ''}`;
  let op = LN_CACHE.get(key);
  if (op === undefined) {
    const hasW = weight !== undefined;
    const hasB = bias !== undefined;
    // One customGrad per arity (tfjs passes the inputs positionally); eps comes via withEps.
    op = tf.customGrad((...inputs: (tf.Tensor | Save)[]) => {
      const save = inputs[inputs.length - 1] as Save;
      const xIn = inputs[0] as tf.Tensor;
      const w = hasW ? (inputs[1] as tf.Tensor1D) : undefined;
      const b = hasB ? (inputs[hasW ? 2 : 1] as tf.Tensor1D) : undefined;
      const epsV = currentEps ?? 1e-5;
      let y: tf.Tensor;
      let xhat: tf.Tensor;
      let rstd: tf.Tensor;
      if (fusedActive('DifformerLayerNorm') && xIn.dtype === 'float32' && xIn.rank >= 1 && xIn.shape[xIn.rank - 1]! > 0) {
        const named: tf.NamedTensorMap = { x: xIn };
        if (w !== undefined) named['weight'] = w;
        if (b !== undefined) named['bias'] = b;
        [y, xhat, rstd] = tf.engine().runKernel('DifformerLayerNorm', named, { eps: epsV }) as tf.Tensor[] as [tf.Tensor, tf.Tensor, tf.Tensor];
      } else {
        const axis = xIn.rank - 1;
        const mean = tf.mean(xIn, axis, true);
        const centered = tf.sub(xIn, mean);
        const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), axis, true), epsV));
        xhat = tf.mul(centered, r);
        rstd = tf.reshape(r, [-1]);
        y = w !== undefined ? tf.mul(xhat, w) : xhat;
        if (b !== undefined) y = tf.add(y, b);
      }
      save(w !== undefined ? [xhat, rstd, w] : [xhat, rstd]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sh, sr, sw] = saved as [tf.Tensor, tf.Tensor1D, tf.Tensor1D | undefined];
          if (fusedActive('DifformerLayerNormGrad') && dy.dtype === 'float32') {
            const named: tf.NamedTensorMap = { dy, xhat: sh, rstd: sr };
            if (sw !== undefined) named['weight'] = sw;
            return tf.engine().runKernel('DifformerLayerNormGrad', named, { hasBias: hasB }) as tf.Tensor[];
          }
          const axis = dy.rank - 1;
          const cols = dy.shape[axis]!;
          const g = sw !== undefined ? tf.mul(dy, sw) : dy;
          const r = tf.reshape(sr, [...dy.shape.slice(0, -1), 1]);
          const dx = tf.mul(r, tf.sub(tf.sub(g, tf.mean(g, axis, true)), tf.mul(sh, tf.mean(tf.mul(g, sh), axis, true))));
          const lead = [...Array(axis).keys()];
          const grads: tf.Tensor[] = [dx];
          const colSum = (t: tf.Tensor): tf.Tensor => (lead.length === 0 ? t : tf.sum(t, lead)).reshape([cols]);
          if (sw !== undefined) grads.push(colSum(tf.mul(dy, sh)));
          if (hasB) grads.push(colSum(dy));
          return grads;
        },
      };
    }) as unknown as (...args: tf.Tensor[]) => tf.Tensor;
    LN_CACHE.set(key, op);
  }
  const args: tf.Tensor[] = [x];
  if (weight !== undefined) args.push(weight);
  if (bias !== undefined) args.push(bias);
  return withEps(eps, () => op!(...args)) as T;
}

/** customGrad functions are cached per arity; eps travels through this slot (read synchronously). */
let currentEps: number | undefined;
function withEps<R>(eps: number, f: () => R): R {
  const prev = currentEps;
  currentEps = eps;
  try {
    return f();
  } finally {
    currentEps = prev;
  }
}

/** What dropout needs of the model's RNG (src/nn/params.ts `Rng`). */
export interface RngState {
  getState(): readonly number[];
  setState(state: readonly number[]): void;
  nextUint32(): number;
}

/**
 * Inverted-dropout mask of `shape`: 1/(1-p) where (next() >>> 8) >= ceil(p * 2^24), else 0, drawn
 * from `rng` in element order. The native kernel replays the RNG (xoshiro128**) bit for bit and
 * leaves `rng` where the JS loop would, so runs stay reproducible and resumable either way.
 */
export function dropoutMask(rng: RngState, shape: number[], p: number): tf.Tensor {
  const threshold = Math.ceil(p * 16777216);
  const scale = 1 / (1 - p);
  if (fusedActive('DifformerDropoutMask')) {
    const state = Uint32Array.from(rng.getState());
    const mask = tf.engine().runKernel('DifformerDropoutMask', {}, { shape, state, threshold, scale } as unknown as tf.NamedAttrMap) as tf.Tensor;
    rng.setState(Array.from(state));
    return mask;
  }
  const n = size(shape);
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) if (rng.nextUint32() >>> 8 >= threshold) mask[i] = scale;
  return tf.tensor(mask, shape, 'float32');
}

/** x * mask whose gradient keeps only the mask (tf.mul would also keep x alive for backprop). */
export function applyDropoutMask<T extends tf.Tensor>(x: T, mask: tf.Tensor): T {
  const f = tf.customGrad((xIn: tf.Tensor | Save, save: tf.Tensor | Save) => {
    (save as Save)([mask]);
    return { value: tf.mul(xIn as tf.Tensor, mask), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, saved[0]!) };
  }) as unknown as (x: tf.Tensor) => tf.Tensor;
  return f(x) as T;
}

/** residual + x * mask (a residual connection around dropout), keeping only the mask for backprop. */
export function addDropoutMasked<T extends tf.Tensor>(residual: T, x: tf.Tensor, mask: tf.Tensor): T {
  const f = tf.customGrad((rIn: tf.Tensor | Save, xIn: tf.Tensor | Save, save: tf.Tensor | Save) => {
    (save as Save)([mask]);
    return {
      value: tf.add(rIn as tf.Tensor, tf.mul(xIn as tf.Tensor, mask)),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [dy, tf.mul(dy, saved[0]!)],
    };
  }) as unknown as (r: tf.Tensor, x: tf.Tensor) => tf.Tensor;
  return f(residual, x) as T;
}

/**
 * Rows [loss; nll] ([2, N]) of fairseq's label-smoothed CE from logits [N, V] (int32 target [N]),
 * loss = (1 - eps) nll + eps/V smooth, nll = lse - x[t], smooth = V lse - sum x, in two native
 * passes over the logits (forward: max, exp-sum, target, row sum; backward: the gradient
 * softmax·a - onehot·b - c written directly). Undefined when the native kernels are not active;
 * callers keep their tf-ops version for that case.
 */
export function nativeSmoothedXentTerms(logits: tf.Tensor2D, target: tf.Tensor1D, epsilon: number): tf.Tensor2D | undefined {
  if (!fusedActive('DifformerXent') || !fusedActive('DifformerXentGrad') || logits.dtype !== 'float32' || target.dtype !== 'int32') return undefined;
  const [, v] = logits.shape;
  if (v === 0) return undefined;
  const f = tf.customGrad((lgIn: tf.Tensor | Save, save: tf.Tensor | Save) => {
    const lg = lgIn as tf.Tensor2D;
    const [lse, tl, rs] = tf.engine().runKernel('DifformerXent', { logits: lg, target }) as tf.Tensor[] as [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
    const nll = tf.sub(lse, tl);
    const smooth = tf.sub(tf.mul(lse, v), rs);
    const loss = tf.add(tf.mul(nll, 1 - epsilon), tf.mul(smooth, epsilon / v));
    (save as Save)([lg, lse, target]);
    return {
      value: tf.stack([loss, nll]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sl, slse, st] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        const [dyLoss, dyNll] = tf.unstack(dy) as [tf.Tensor1D, tf.Tensor1D];
        const a = tf.add(dyLoss, dyNll);
        const b = tf.add(tf.mul(dyLoss, 1 - epsilon), dyNll);
        const c = tf.mul(dyLoss, epsilon / v);
        return tf.engine().runKernel('DifformerXentGrad', { logits: sl, lse: slse, target: st, a, b, c }) as tf.Tensor;
      },
    };
  }) as unknown as (lg: tf.Tensor2D) => tf.Tensor2D;
  return f(logits);
}

/** One Adam step for one parameter: [p', m', v'] as new tensors, or undefined when not active. */
export function nativeAdamStep(
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  hp: { b1: number; b2: number; eps: number; stepSize: number; decay: number; gradScale: number },
): [tf.Tensor, tf.Tensor, tf.Tensor] | undefined {
  if (!fusedActive('DifformerAdam') || [p, m, v, g].some((t) => t.dtype !== 'float32' || t.size !== p.size)) return undefined;
  return tf.engine().runKernel('DifformerAdam', { p, m, v, g }, hp as unknown as tf.NamedAttrMap) as tf.Tensor[] as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/** Sum of squares of all elements of `ts` (float32), accumulated in double; undefined when not active. */
export function nativeSumSquares(ts: tf.Tensor[]): number | undefined {
  if (!fusedActive('DifformerAdam') || ts.some((t) => t.dtype !== 'float32')) return undefined;
  const backend = tf.backend() as unknown as BackendWasm;
  const p = new Float64Array(1 + 2 * ts.length);
  p[0] = ts.length;
  ts.forEach((t, i) => {
    p[1 + 2 * i] = t.size === 0 ? 0 : offsetOf(backend, t);
    p[2 + 2 * i] = t.size;
  });
  return addon!.sumSquares(heap(backend), p);
}
