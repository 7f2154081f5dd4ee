import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend.js';
import { resolveTransformerOptions, TransformerModel } from './models/transformer.js';
import { labelSmoothedCrossEntropy } from './criterions/label_smoothed_cross_entropy.js';
await initBackend({ backend: (process.argv[2] ?? 'wasm') as 'wasm' });
const arch = process.argv[3] ?? 'transformer_tiny';
const V = Number(process.argv[4] ?? 1000);
const B = Number(process.argv[5] ?? 8), T = Number(process.argv[6] ?? 16);
const dict = { size: V, padIndex: 1, eosIndex: 2, bosIndex: 0 };
let t0 = Date.now();
const model = new TransformerModel(resolveTransformerOptions(arch, {}), { src: dict, tgt: dict }, 1);
console.log('build ms', Date.now() - t0, 'params', model.params.numParams());
const rnd = () => tf.tensor2d(Array.from({ length: B * T }, (_, i) => 4 + ((i * 7919) % (V - 4))), [B, T], 'int32');
const src = rnd(), prev = rnd(), tgt = rnd();
const opt = tf.train.adam(1e-4);
for (let i = 0; i < 6; i++) {
  t0 = Date.now();
  opt.minimize(() => tf.div(labelSmoothedCrossEntropy(model.forward(src, prev, true), tgt, { labelSmoothing: 0.1, sentenceAvg: false }, 1, B * T).loss, B * T) as tf.Scalar, false, model.params.trainableVariables());
  await tf.ready();
  console.log('step', i, Date.now() - t0, 'ms', 'tensors', tf.memory().numTensors);
}
