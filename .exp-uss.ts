import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.ts';
await initBackend({ backend: 'wasm' });
const x = tf.randomNormal([1024, 256]); const ids = tf.randomUniform([1024], 0, 8000, 'int32');
for (let i = 0; i < 3; i++) tf.unsortedSegmentSum(x, ids, 8000).dispose();
const t = performance.now(); for (let i = 0; i < 50; i++) { const y = tf.unsortedSegmentSum(x, ids, 8000); y.dataSync(); y.dispose(); }
console.log('uss [1024x256] -> [8000x256] ms', ((performance.now() - t) / 50).toFixed(2));
const z = tf.zeros([8000, 256]); const t2 = performance.now(); for (let i = 0; i < 50; i++) { const y = tf.add(z, 1); y.dataSync(); y.dispose(); }
console.log('for scale: add scalar to [8000x256] ms', ((performance.now() - t2) / 50).toFixed(2));
