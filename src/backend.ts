/**
 * Choosing and initialising the TensorFlow.js backend (process-global in tfjs).
 *
 * `auto` tries, in order: `tensorflow-gpu` (@tensorflow/tfjs-node-gpu), `tensorflow`
 * (@tensorflow/tfjs-node), `wasm` (tfjs-backend-wasm, SIMD build; with the native OpenBLAS
 * kernels of ./backend/native_kernels.ts when the addon is built, reported as `wasm+native`),
 * `cpu` (pure JS, ~30x slower than wasm for training; a last resort). It reports which one it
 * got and why the others were skipped. An explicit backend that cannot load throws
 * DifformerError('DIFFORMER_BACKEND').
 *
 * `threads`:
 *   - wasm: only with the experimental `wasmThreads` (tfjs disables wasm threads under Node; see
 *     ./backend/wasm_threads.ts). Without it wasm runs on one thread and `threads` only feeds the
 *     env variables below.
 *   - native libraries loaded later in this process (libtensorflow from tfjs-node, a future
 *     OpenBLAS addon): OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, TF_NUM_INTRAOP_THREADS and
 *     TF_NUM_INTEROP_THREADS are set (unless already set by the user) before anything native is
 *     loaded. They only take effect for libraries that read them at load time. Don't combine wasm
 *     threads with a multi-threaded native BLAS: the two pools compete for the same cores.
 *
 * Calling initBackend again is cheap: the first result is cached (and concurrent callers share
 * one initialisation). Asking for a different backend afterwards throws: switch with
 * `resetBackendForTests()` + initBackend in tests only.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as tfwasm from '@tensorflow/tfjs-backend-wasm';
import { DifformerError } from './errors.js';
import { registerWasmKernels } from './backend/wasm_kernels.js';
import { registerNativeKernels } from './backend/native_kernels.js';
import { installWasmThreadsShim, type WasmThreadsShim } from './backend/wasm_threads.js';

export type BackendName = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type ResolvedBackendName = Exclude<BackendName, 'auto'>;

export interface InitBackendOptions {
  backend: BackendName;
  /** Worker threads for compute (see the file comment for what it affects per backend). */
  threads?: number;
  /** EXPERIMENTAL: multi-threaded wasm under Node through a shim over tfjs internals. */
  wasmThreads?: boolean;
  log?: (msg: string, fields?: object) => void;
}

export interface BackendReport {
  name: ResolvedBackendName;
  reason: string;
  skipped: { name: string; why: string }[];
}

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

const NATIVE_PACKAGES = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
} as const;

const INSTALL_HINT = {
  'tensorflow-gpu': 'npm install @tensorflow/tfjs-node-gpu on a machine with CUDA; its install script downloads libtensorflow',
  tensorflow: 'npm install @tensorflow/tfjs-node; its install script downloads libtensorflow, so it needs network access',
} as const;

/** What one attempt to bring up a backend found. */
type Attempt = { ok: true; reason: string } | { ok: false; why: string };

let current:
  | { key: string; promise: Promise<BackendReport>; wasmThreads: boolean; threads: number | undefined }
  | undefined;
let nativeLoaded: 'tensorflow-gpu' | 'tensorflow' | undefined;
let wasmThreadsState: { enabled: boolean; threads: number } | undefined;

function optionsKey(o: InitBackendOptions): string {
  return JSON.stringify([o.backend, o.threads ?? null, o.wasmThreads ?? false]);
}

/**
 * Initialise the tfjs backend once per process. See the file comment for the order `auto` uses.
 * @throws DifformerError('DIFFORMER_BACKEND') if an explicitly requested backend can't load, or a
 *   different backend is requested after one was initialised.
 */
export async function initBackend(opts: InitBackendOptions): Promise<BackendReport> {
  const key = optionsKey(opts);
  if (current !== undefined) {
    if (current.key === key) return current.promise;
    const prev = current;
    const report = await prev.promise.catch(() => undefined);
    if (report !== undefined) {
      const sameThreads =
        (opts.wasmThreads ?? false) === prev.wasmThreads && (opts.threads === undefined || opts.threads === prev.threads);
      if ((opts.backend === 'auto' || opts.backend === report.name) && sameThreads) return report;
      throw new DifformerError(
        'DIFFORMER_BACKEND',
        `--backend ${opts.backend}: the tfjs backend is process-global and this process already initialised ` +
          `${report.name}${prev.wasmThreads ? ' with wasm threads' : ''}; it cannot be changed now`,
      );
    }
  }
  const promise = doInit(opts);
  const entry = { key, promise, wasmThreads: opts.wasmThreads ?? false, threads: opts.threads };
  current = entry;
  try {
    return await promise;
  } catch (e) {
    // A failed attempt must not poison later ones (e.g. explicit gpu, then auto).
    if (current === entry) current = undefined;
    throw e;
  }
}

/** Forget the cached result so the next initBackend picks again (tests only; tfjs's own backend
 *  registry keeps already-created backends, so this is cheap). */
export function resetBackendForTests(): void {
  current = undefined;
}

async function doInit(opts: InitBackendOptions): Promise<BackendReport> {
  const log = opts.log ?? (() => undefined);
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--threads must be a positive integer, got ${String(opts.threads)}`);
  }
  if (!(BACKEND_NAMES as readonly string[]).includes(opts.backend)) {
    throw new DifformerError(
      'DIFFORMER_BAD_OPTION',
      `--backend ${String(opts.backend)}: unknown backend (choose one of ${BACKEND_NAMES.join(', ')})`,
    );
  }
  if (opts.threads !== undefined) setNativeThreadEnv(opts.threads, log);

  const order: ResolvedBackendName[] =
    opts.backend === 'auto' ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] : [opts.backend];
  const skipped: { name: string; why: string }[] = [];
  for (const name of order) {
    const attempt = await tryBackend(name, opts, log);
    if (attempt.ok) {
      log('tfjs backend ready', { backend: name, reason: attempt.reason, skipped });
      return { name, reason: attempt.reason, skipped };
    }
    log('tfjs backend unavailable', { backend: name, why: attempt.why });
    if (opts.backend !== 'auto') {
      const hint = name === 'tensorflow-gpu' || name === 'tensorflow' ? '' : '; try --backend cpu';
      throw new DifformerError('DIFFORMER_BACKEND', `--backend ${name}: ${attempt.why}${hint}`);
    }
    skipped.push({ name, why: attempt.why });
  }
  // Unreachable in practice: the cpu backend is pure JS and always loads.
  throw new DifformerError('DIFFORMER_BACKEND', `no tfjs backend could be initialised: ${skipped.map((s) => `${s.name}: ${s.why}`).join('; ')}`);
}

function tryBackend(name: ResolvedBackendName, opts: InitBackendOptions, log: NonNullable<InitBackendOptions['log']>): Promise<Attempt> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow':
      return tryNative(name);
    case 'wasm':
      return tryWasm(opts, log);
    case 'cpu':
      return trySetBackend('cpu').then((err) =>
        err === undefined ? { ok: true, reason: 'tfjs cpu backend (pure JS; very slow for training)' } : { ok: false, why: err },
      );
  }
}

/** tf.setBackend resolves false (after a console.warn) on failure; turn that into a reason. */
async function trySetBackend(name: string): Promise<string | undefined> {
  try {
    const ok = await tf.setBackend(name);
    if (!ok) return `tf.setBackend('${name}') failed (see the warning above)`;
    await tf.ready();
    return tf.getBackend() === name ? undefined : `tf.setBackend('${name}') left backend ${tf.getBackend()}`;
  } catch (e) {
    return `tf.setBackend('${name}') threw: ${firstLine(e)}`;
  }
}

async function tryNative(name: 'tensorflow-gpu' | 'tensorflow'): Promise<Attempt> {
  const pkg = NATIVE_PACKAGES[name];
  if (nativeLoaded !== undefined && nativeLoaded !== name) {
    return { ok: false, why: `${NATIVE_PACKAGES[nativeLoaded]} is already loaded in this process` };
  }
  if (nativeLoaded === undefined) {
    try {
      // A variable specifier keeps tsc from requiring the (optional, usually absent) package.
      const spec: string = pkg;
      await import(spec);
      nativeLoaded = name;
    } catch (e) {
      if (isModuleNotFound(e, pkg)) return { ok: false, why: `${pkg} is not installed (${INSTALL_HINT[name]})` };
      return { ok: false, why: `${pkg} is installed but failed to load: ${firstLine(e)}` };
    }
  }
  // tfjs-node registers the 'tensorflow' backend on the tfjs-core it resolves; a second copy of
  // tfjs-core (version mismatch) would leave ours without it.
  if (tf.findBackendFactory('tensorflow') === null) {
    return { ok: false, why: `${pkg} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs (version mismatch: needs ${tf.version_core})` };
  }
  const err = await trySetBackend('tensorflow');
  if (err !== undefined) return { ok: false, why: `${pkg}: ${err}` };
  const reason =
    name === 'tensorflow-gpu'
      ? `${pkg} (libtensorflow GPU build; it silently runs on CPU if CUDA/cuDNN are not usable)`
      : `${pkg} (native libtensorflow on CPU)`;
  return { ok: true, reason };
}

function isModuleNotFound(e: unknown, pkg: string): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && msg.includes(pkg);
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : typeof e === 'object' && e !== null && 'message' in e ? String((e as { message: unknown }).message) : String(e);
  return msg.split('\n')[0] ?? msg;
}

let wasmPathsSet = false;

/** Directory holding tfjs-backend-wasm's .wasm files, resolved from this file's location so it
 *  works both from source (tsx) and from dist/. */
export function wasmBinaryDir(): string {
  const req = createRequire(import.meta.url);
  return path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
}

async function tryWasm(opts: InitBackendOptions, log: NonNullable<InitBackendOptions['log']>): Promise<Attempt> {
  const wantThreads = opts.wasmThreads === true;
  const threads = wantThreads ? Math.min(opts.threads ?? 2, 8) : 1;
  if (wasmThreadsState !== undefined) {
    // tfjs creates the wasm module once per process; its threading can't change afterwards.
    if (wasmThreadsState.enabled !== wantThreads || (wantThreads && wasmThreadsState.threads !== threads)) {
      return {
        ok: false,
        why: `the wasm backend was already created in this process with ${wasmThreadsState.threads} thread(s); restart to change --threads / wasm threads`,
      };
    }
  }
  registerWasmKernels();
  // Optional OpenBLAS addon (native/): registered before the backend is created; without it, plain wasm.
  const native = registerNativeKernels({ threads: opts.threads });
  if (!native.native) log(`native CPU kernels unavailable (${native.detail}): running on plain wasm`);
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  let shim: WasmThreadsShim | undefined;
  if (wasmThreadsState === undefined) {
    if (!wasmPathsSet) {
      // setWasmPaths throws once the module was (attempted to be) created; set it only once.
      tfwasm.setWasmPaths(wasmBinaryDir());
      wasmPathsSet = true;
    }
    if (wantThreads) {
      if (simd !== true) return { ok: false, why: 'wasm threads need the SIMD build, and this runtime has no wasm SIMD' };
      shim = installWasmThreadsShim(threads, log);
      tfwasm.setThreadsCount(threads);
    }
  }
  let err: string | undefined;
  try {
    err = await trySetBackend('wasm');
  } finally {
    shim?.restore();
  }
  if (err !== undefined) return { ok: false, why: err };
  let actual = tfwasm.getThreadsCount();
  if (shim !== undefined) {
    try {
      const fin = shim.finish(tf.backend() as tfwasm.BackendWasm);
      log('wasm threads', { requested: threads, xnnpackThreads: actual, ...fin });
    } catch (e) {
      return { ok: false, why: `wasm threads: ${firstLine(e)}` };
    }
  }
  actual = tfwasm.getThreadsCount();
  wasmThreadsState ??= { enabled: wantThreads, threads: actual };
  if (!wantThreads && opts.threads !== undefined && opts.threads > 1) {
    log('wasm runs single-threaded; --threads only applies to wasm with the experimental wasm threads flag', { threads: opts.threads });
  }
  const nativeNote = native.native ? ` + native CPU kernels (${native.detail})` : '';
  const reason = `tfjs wasm${native.native ? '+native' : ''} backend (${simd === true ? 'SIMD' : 'no SIMD: slower'}, ${actual} thread${actual === 1 ? '' : 's'}${wantThreads ? ', experimental threads shim' : ''})${nativeNote}`;
  return { ok: true, reason };
}

function setNativeThreadEnv(threads: number, log: NonNullable<InitBackendOptions['log']>): void {
  const set: Record<string, string> = {};
  for (const v of ['OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS']) {
    if (process.env[v] === undefined) {
      // Inter-op parallelism beyond 1-2 only oversubscribes a small machine.
      const value = v === 'TF_NUM_INTEROP_THREADS' ? String(Math.min(threads, 2)) : String(threads);
      process.env[v] = value;
      set[v] = value;
    }
  }
  if (Object.keys(set).length > 0) log('thread env for native libraries', set);
}
