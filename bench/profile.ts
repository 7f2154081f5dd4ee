/**
 * Where one training step's time goes, per tfjs kernel (run by hand):
 *
 *   node --import tsx bench/profile.ts [arch] [--max-tokens N] [--top K] [--shapes]
 *
 * Runs two warm-up steps of the bench's training setup (bench/speed.ts), then one step under
 * tf.profile and prints the kernels by total time (wasm kernels are synchronous, so the
 * profiler's per-kernel wall time is exact), their call counts, and the time outside kernels
 * (JS, tape bookkeeping, gradient glue). DIFFORMER_NATIVE=0 profiles plain wasm.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { registerBuiltins } from '../src/cli/builtins.js';
import { createLogger } from '../src/log.js';
import { resolveOptions } from '../src/options.js';
import { getArchitecture, getCriterion } from '../src/registry.js';
import { Trainer } from '../src/train/trainer.js';
import { trainingDefaults } from '../src/train/trainer_options.js';
import type { Criterion, ModelDeps, TrainableModel } from '../src/train/types.js';
import { benchCorpus, trainBatches } from './data.js';

const args = process.argv.slice(2);
const get = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const arch = args.find((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1]!.startsWith('--'))) ?? 'transformer_iwslt_de_en';
const maxTokens = Number(get('--max-tokens') ?? 4096);
const top = Number(get('--top') ?? 25);

const report = await initBackend({ backend: 'wasm' });
registerBuiltins();
const difformer = arch.startsWith('difformer');
const corpus = benchCorpus(8000, 6000, 11, difformer);
const batches = trainBatches(corpus, maxTokens, 3, 21);
const { model: mc, preset } = getArchitecture<object, TrainableModel, ModelDeps>(arch);
const deps: ModelDeps = { srcDict: corpus.dict, tgtDict: corpus.dict, seed: 1 };
const model = mc.build(resolveOptions<object>(mc.defaults, preset, difformer ? {} : { shareAllEmbeddings: true, dropout: 0.3 }), deps);
const critName = difformer ? 'difformer' : 'label_smoothed_cross_entropy';
const cc = getCriterion<object, Criterion>(critName);
const criterion = cc.build(resolveOptions<object>(cc.defaults, { labelSmoothing: 0.1 }));
const opts = resolveOptions(trainingDefaults, {
  lr: 5e-4, lrScheduler: 'inverse_sqrt' as const, warmupUpdates: 4000, adamBetas: [0.9, 0.98], weightDecay: 1e-4, maxTokens, noSave: true, disableValidation: true,
});
const trainer = new Trainer(opts, {
  model, criterion, train: corpus.dataset, valid: undefined, dicts: { src: corpus.dict, tgt: corpus.dict },
  config: { task: { name: 'translation', options: {} }, model: { name: mc.name, arch, options: {} }, criterion: { name: critName, options: {} }, training: opts },
  log: createLogger('none'), maxSourcePositions: 1024, maxTargetPositions: 1024,
});
for (let i = 0; i < 2; i++) trainer.step([batches[i % batches.length]!]);
const b = batches[0]!;
const t0 = performance.now();
const prof = await tf.profile(() => void trainer.step([b]));
const wall = performance.now() - t0;

// Only leaf kernels (registered kernel names); scopes (customGrad) contain them.
const agg = new Map<string, { ms: number; n: number }>();
let kernelMs = 0;
for (const k of prof.kernels) {
  if (!tf.getKernel(k.name, 'wasm')) continue;
  const key = args.includes('--shapes') ? `${k.name} ${JSON.stringify(k.inputShapes)}` : k.name;
  const e = agg.get(key) ?? { ms: 0, n: 0 };
  const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  e.ms += ms;
  e.n += 1;
  kernelMs += ms;
  agg.set(key, e);
}
console.log(`${arch}, batch ${b.bsz}x${b.srcLen}/${b.tgtLen} (${b.ntokens} target tokens); ${report.reason}`);
console.log(`peak tensor bytes ${(prof.peakBytes / 2 ** 20).toFixed(0)} MiB (new ${(prof.newBytes / 2 ** 20).toFixed(0)} MiB); wasm heap ${((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length / 2 ** 20).toFixed(0)} MiB`);
console.log(`step under the profiler: ${wall.toFixed(0)} ms; in kernels ${kernelMs.toFixed(0)} ms; outside kernels ${(wall - kernelMs).toFixed(0)} ms; kernel calls ${[...agg.values()].reduce((a, e) => a + e.n, 0)}`);
for (const [name, e] of [...agg.entries()].sort((x, y) => y[1].ms - x[1].ms).slice(0, top)) {
  console.log(`${e.ms.toFixed(1).padStart(9)} ms ${((100 * e.ms) / wall).toFixed(1).padStart(5)}%  x${String(e.n).padEnd(5)} ${name}`);
}
