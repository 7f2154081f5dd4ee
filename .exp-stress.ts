import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.ts';
import { linear } from './src/nn/linear.ts';
await initBackend({ backend: 'wasm', wasmThreads: true, threads: 2 });
let maxErr = 0;
const keep: tf.Tensor[] = [];
for (let i = 1; i <= 12; i++) {
  const n = 64 * i;
  keep.push(tf.zeros([n * 200, 256])); // force heap growth
  const x = tf.randomNormal([n, 96]) as tf.Tensor2D, w = tf.randomNormal([80, 96]) as tf.Tensor2D;
  const y = linear(x, w).dataSync();
  const X = x.dataSync(), W = w.dataSync();
  for (let r = 0; r < n; r += 7) for (let o = 0; o < 80; o += 5) { let s = 0; for (let k = 0; k < 96; k++) s += X[r*96+k]*W[o*96+k]; maxErr = Math.max(maxErr, Math.abs(s - y[r*80+o])); }
  const ids = tf.randomUniform([n], 0, 50, 'int32');
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, ids)))(tf.ones([50, 16])).sum().dataSync()[0];
  if (g !== n * 16) throw new Error('gather grad wrong ' + g);
  tf.dispose([x, w, ids]);
}
console.log('ok maxErr', maxErr.toExponential(2), 'heapMB', (tf.memory().numBytes/1e6).toFixed(0));
