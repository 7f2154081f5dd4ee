/**
 * EXPERIMENTAL: multi-threaded tfjs-backend-wasm under Node (behind `wasmThreads: true`).
 *
 * tfjs-backend-wasm 4.22 hard-codes "no threads in Node" (its WASM_HAS_MULTITHREAD_SUPPORT flag
 * returns false when IS_NODE). Its threaded build itself works in Node (Emscripten pthreads map
 * to worker_threads); what breaks is how tfjs hands the scripts to the workers:
 *   1. the pthread worker script is given as a Blob URL (`URL.createObjectURL(new Blob(...))`),
 *      which Node's `new Worker(url)` cannot load;
 *   2. the Emscripten factory is posted to each worker as a Blob (`mainScriptUrlOrBlob`), and the
 *      worker turns it into a Blob URL again and `importScripts` it via fs.readFileSync;
 *   3. the factory text is a function body cut out of the rollup bundle, so inside a worker it
 *      refers to bundle-scope names that don't exist there (`require$$0`.. for fs/path/os,
 *      `commonjsGlobal`).
 * The shim, active only while the backend initialises:
 *   - wraps `globalThis.Blob` to remember the text of the two JS blobs tfjs creates;
 *   - writes the factory to a temp file, and the worker script (plus an epilogue that defines the
 *     bundle-scope names and makes the worker's `URL.createObjectURL` return the factory's path)
 *     to a temp `.cjs` file; `URL.createObjectURL` on the main thread returns that file's path;
 *   - sets WASM_HAS_MULTITHREAD_SUPPORT to true;
 *   - makes the workers start without the parent's execArgv (e.g. `--import tsx`);
 *   - makes os.cpus() report 2 x threads: tfjs's C++ caps the XNNPACK pool at (logical cores / 2)
 *     (1 on a 2-core machine) and at 8 (Emscripten's pre-spawned pool size).
 * Afterwards it restores Blob / URL.createObjectURL, unrefs the worker threads (so they don't
 * keep the process alive) and terminates the idle ones from Emscripten's fixed pool of 8.
 * Temp files are removed once the backend is up (or at process exit if initialisation fails).
 *
 * This depends on tfjs internals (pinned to 4.22): any mismatch fails loudly with a
 * DIFFORMER_BACKEND error instead of silently running single-threaded.
 */
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

const FACTORY_PREFIX = 'var WasmBackendModuleThreadedSimd';

/** Minimal view of the Emscripten pthread bookkeeping we touch (not part of tfjs's types). */
interface EmscriptenWorker {
  unref(): void;
  terminate(): unknown;
}
interface EmscriptenPThread {
  unusedWorkers: EmscriptenWorker[];
  runningWorkers: EmscriptenWorker[];
}

export interface WasmThreadsShim {
  /** Undo the global patches (Blob, URL.createObjectURL). Safe to call more than once. */
  restore(): void;
  /** After the backend is up: unref workers and drop idle ones. Returns live worker count. */
  finish(backend: BackendWasm): { runningWorkers: number; terminatedIdle: number };
}

/** Maps the bundle's `var require$$N = require('x')` lines, so the worker can define the same names. */
function bundleRequires(bundlePath: string): Map<string, string> {
  const src = fs.readFileSync(bundlePath, 'utf8').slice(0, 20000);
  const map = new Map<string, string>();
  for (const m of src.matchAll(/var (require\$\$\d+) = require\('([^']+)'\);/g)) map.set(m[1]!, m[2]!);
  return map;
}

export function installWasmThreadsShim(threads: number, log: (msg: string, fields?: object) => void): WasmThreadsShim {
  const req = createRequire(import.meta.url);
  // The same module object the bundle's `require('os')` returns.
  const osModule = req('node:os') as typeof os;
  const bundlePath = req.resolve('@tensorflow/tfjs-backend-wasm');
  const requires = bundleRequires(bundlePath);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'difformer-wasm-threads-'));
  const cleanup = (): void => {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort at exit */
    }
  };
  process.once('exit', cleanup);

  // Also the object the factory's `require("worker_threads")` returns.
  const workerThreads = req('node:worker_threads') as typeof import('node:worker_threads');
  const OrigWorker = workerThreads.Worker;
  const origCpus = osModule.cpus;
  const OrigBlob = globalThis.Blob;
  const origCreateObjectURL = URL.createObjectURL;
  const blobText = new WeakMap<Blob, string>();
  let factoryPath: string | undefined;
  let workerPath: string | undefined;

  // Emscripten/tfjs call `new Blob([string], {type})`; we return a real Blob and remember its text.
  function PatchedBlob(parts?: BlobPart[], options?: BlobPropertyBag): Blob {
    const blob = new OrigBlob(parts, options);
    if (parts !== undefined && parts.every((p) => typeof p === 'string')) {
      const text = (parts as string[]).join('');
      blobText.set(blob, text);
      if (text.startsWith(FACTORY_PREFIX)) {
        const used = new Set(Array.from(text.matchAll(/\brequire\$\$\d+\b/g), (m) => m[0]));
        const missing = [...used].filter((n) => !requires.has(n));
        if (missing.length > 0) throw new Error(`wasm threads shim: unknown bundle names ${missing.join(', ')}`);
        factoryPath = path.join(dir, 'tfjs-wasm-threaded-factory.js');
        fs.writeFileSync(factoryPath, text);
      }
    }
    return blob;
  }
  PatchedBlob.prototype = OrigBlob.prototype;

  function patchedCreateObjectURL(obj: Blob | MediaSource): string {
    const text = obj instanceof OrigBlob ? blobText.get(obj) : undefined;
    if (text === undefined || !text.includes('worker_threads')) return origCreateObjectURL(obj as Blob);
    if (factoryPath === undefined) throw new Error('wasm threads shim: worker requested before the factory blob was seen');
    if (workerPath === undefined) {
      // Appended (not prepended) so the script's own "use strict" stays first; it runs before
      // the first message arrives, which is all that matters.
      const defs = [...requires].map(([name, mod]) => `globalThis[${JSON.stringify(name)}]=require(${JSON.stringify(mod)});`);
      const epilogue =
        `\n;(function(){${defs.join('')}globalThis.commonjsGlobal=globalThis;` +
        `var p=${JSON.stringify(factoryPath)};URL.createObjectURL=function(){return p};URL.revokeObjectURL=function(){};})();\n`;
      workerPath = path.join(dir, 'tfjs-wasm-threaded-worker.cjs');
      fs.writeFileSync(workerPath, text + epilogue);
    }
    return workerPath;
  }

  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    globalThis.Blob = OrigBlob;
    URL.createObjectURL = origCreateObjectURL;
    osModule.cpus = origCpus;
    workerThreads.Worker = OrigWorker;
  };

  globalThis.Blob = PatchedBlob as unknown as typeof Blob;
  URL.createObjectURL = patchedCreateObjectURL;
  // The C++ side caps the pool at emscripten_num_logical_cores()/2 (read once, in a static
  // initializer, from os.cpus().length in Node), assuming 2 hyperthreads per core; report
  // 2 x threads so the cap is exactly the requested count.
  const fakeCpus = origCpus.call(osModule);
  while (fakeCpus.length < 2 * threads) fakeCpus.push(fakeCpus[0]!);
  fakeCpus.length = 2 * threads;
  osModule.cpus = () => fakeCpus;
  // Workers inherit process.execArgv by default (`--import tsx`, `--input-type`, test-runner
  // flags...), which breaks or slows loading a plain .cjs script; they need none of it.
  class PlainWorker extends OrigWorker {
    constructor(filename: string | URL, options?: import('node:worker_threads').WorkerOptions) {
      super(filename, { ...options, execArgv: [] });
    }
  }
  workerThreads.Worker = PlainWorker;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  log('wasm threads shim installed (experimental)', { dir });

  return {
    restore,
    finish(backend: BackendWasm) {
      restore();
      // Emscripten exports PThread on the module object; not in tfjs's typings.
      const pthread = (backend.wasm as unknown as { PThread?: EmscriptenPThread }).PThread;
      if (pthread === undefined || factoryPath === undefined || workerPath === undefined) {
        throw new Error('wasm threads shim: the threaded wasm build was not used (tfjs internals changed?)');
      }
      for (const w of pthread.runningWorkers) w.unref();
      const idle = pthread.unusedWorkers.splice(0);
      for (const w of idle) void w.terminate();
      // Every worker has loaded the factory by now (Emscripten waits for that before resolving),
      // and no new ones are spawned later (XNNPACK's pool is created once), so the files can go.
      cleanup();
      return { runningWorkers: pthread.runningWorkers.length, terminatedIdle: idle.length };
    },
  };
}
