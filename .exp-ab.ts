import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.ts';
import { linear } from './src/nn/linear.ts';
await initBackend({ backend: 'wasm' });
const [n, i, o] = [1024, 256, 1024];
const x = tf.randomNormal([n, i]) as tf.Tensor2D, w = tf.randomNormal([o, i]) as tf.Tensor2D, wIO = tf.transpose(w) as tf.Tensor2D, b = tf.randomNormal([o]) as tf.Tensor1D, r = tf.randomNormal([n, o]);
const io = tf.customGrad((xa: any, wa: any, ba: any, save: any) => { save([xa, wa]); return { value: tf.fused.matMul({ a: xa, b: wa, bias: ba }), gradFunc: (dy: any, [sx, sw]: any) => [tf.matMul(dy, tf.transpose(sw)), tf.matMul(tf.transpose(sx), dy), tf.reshape(tf.matMul(tf.ones([1, n]), dy), [o])] }; }) as any;
const run = (f: any, ww: tf.Tensor) => { const t = performance.now(); const gs = tf.tidy(() => tf.grads((a: any, c: any, d: any) => tf.sum(tf.mul(f(a, c, d), r)))([x, ww, b])); gs.forEach(g => g.dataSync()); tf.dispose(gs); return performance.now() - t; };
const A: number[] = [], B: number[] = [];
for (let k = 0; k < 4; k++) { run(linear, w); run(io, wIO); }
for (let k = 0; k < 40; k++) { A.push(run(linear, w)); B.push(run(io, wIO)); }
const med = (v: number[]) => v.sort((p, q) => p - q)[v.length >> 1]!;
const fA = [], fB = [];
for (let k = 0; k < 40; k++) { let t = performance.now(); tf.tidy(() => linear(x, w, b).dataSync()); fA.push(performance.now() - t); t = performance.now(); tf.tidy(() => tf.fused.matMul({ a: x, b: wIO, bias: b }).dataSync()); fB.push(performance.now() - t); }
console.log('fwd+bwd [out,in] custom', med(A).toFixed(1), '[in,out]', med(B).toFixed(1), ' | fwd only', med(fA).toFixed(1), med(fB).toFixed(1));
