import * as tf from '@tensorflow/tfjs';
import * as tfwasm from '@tensorflow/tfjs-backend-wasm';
import { installWasmThreadsShim } from '/work/main/src/backend/wasm_threads.ts';
const useThreads = process.argv[2] === '1';
const n = Number(process.argv[3] ?? 2);
let shim;
if (useThreads) { shim = installWasmThreadsShim(n, (m, f) => console.error(m, f)); tfwasm.setThreadsCount(n); }
const t0 = performance.now();
const ok = await tf.setBackend('wasm');
await tf.ready();
console.error('backend', ok, tf.getBackend(), 'init ms', performance.now() - t0, 'threads', tfwasm.getThreadsCount());
if (shim) console.error(shim.finish(tf.backend() as any));
const a = tf.randomNormal([512, 512]), b = tf.randomNormal([512, 512]);
for (let w = 0; w < 3; w++) tf.matMul(a, b).dispose();
const reps = 60; const t1 = performance.now();
for (let i = 0; i < reps; i++) { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); }
const dt = (performance.now() - t1) / reps;
console.error('512 matmul ms', dt.toFixed(2), 'GFLOP/s', (2 * 512 ** 3 / dt / 1e6).toFixed(1));
console.error('rss MB', (process.memoryUsage().rss / 1e6).toFixed(0));
