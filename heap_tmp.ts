import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.js';
await initBackend({ backend: 'wasm' });
const heap = () => ((tf.backend() as any).wasm.HEAPU8.length / 2**20).toFixed(0);
const keep: tf.Tensor[] = [];
try {
  for (let i = 0; i < 40; i++) {
    keep.push(tf.fill([64 * 2**20 / 4], 1));
    if (i % 8 === 0) console.log(i, 'heap', heap());
  }
  console.log('allocated, heap', heap());
  for (let i = keep.length - 1; i >= 0; i--) { keep[i]!.dispose(); }
  console.log('disposed ok');
  const t = tf.tidy(() => tf.add(tf.fill([2**20], 1), 1)); console.log('after', t.dataSync()[0]);
} catch (e) { console.log('error', String(e).slice(0, 200), 'heap', heap()); }
