import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.ts';
import { linear } from './src/nn/linear.ts';
const thr = process.argv[2] === '1';
await initBackend({ backend: 'wasm', wasmThreads: thr, threads: thr ? 2 : undefined });
function med(f: () => void, n: number) { f(); f(); const s: number[] = []; for (let i = 0; i < n; i++) { const t = performance.now(); f(); s.push(performance.now() - t); } s.sort((a, b) => a - b); return s[n >> 1]!; }
const a = tf.randomNormal([512, 512]), b = tf.randomNormal([512, 512]);
const mm = med(() => { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); }, 40);
const vocab = 4000, d = 256, ffn = 1024, tokens = 512;
const emb = tf.variable(tf.randomNormal([vocab, d], 0, 0.05)); const w1 = tf.variable(tf.randomNormal([ffn, d], 0, 0.05)); const b1 = tf.variable(tf.zeros([ffn]));
const w2 = tf.variable(tf.randomNormal([d, ffn], 0, 0.05)); const b2 = tf.variable(tf.zeros([d]));
const ids = tf.randomUniform([tokens], 0, vocab, 'int32'); const targets = tf.oneHot(tf.randomUniform([tokens], 0, vocab, 'int32'), vocab);
const opt = tf.train.adam(1e-3);
const step = med(() => { const l = opt.minimize(() => { const h = tf.gather(emb, ids) as tf.Tensor2D; const f = tf.relu(linear(h, w1 as any, b1 as any)); const o = tf.add(h, linear(f, w2 as any, b2 as any)) as tf.Tensor2D; return tf.losses.softmaxCrossEntropy(targets, linear(o, emb as any)) as tf.Scalar; }, true); l!.dataSync(); l!.dispose(); }, 10);
console.log(JSON.stringify({ thr, mm: +mm.toFixed(2), step: +step.toFixed(1) }));
