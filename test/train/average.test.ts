/**
 * Checkpoint averaging on hand-made checkpoints: exact means, the order of best/epoch/update
 * selection (the best N, not Difformer's ascending-sort worst N), metadata of the newest input,
 * and the user errors (no inputs, shape and dictionary mismatches).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import { averageWeights, metricDirection, parseCheckpointName, selectCheckpoints } from '../../src/train/average.js';
import { runAverageCheckpoints, averageDefaults, type AverageOptions } from '../../src/cli/average_checkpoints.js';
import { loadCheckpoint, type CheckpointMeta } from '../../src/train/checkpoint.js';
import { writeSafetensors, type NamedArray } from '../../src/train/safetensors.js';
import { DifformerError } from '../../src/errors.js';
import { runCli, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const f32 = (shape: number[], values: number[]): NamedArray => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

function meta(o: { numUpdates: number; epoch?: number; dictHash?: string; maximize?: boolean; metric?: string; metrics?: Record<string, number> }): CheckpointMeta {
  const dict = { size: 8, hash: o.dictHash ?? 'aaaa', symbols: [] };
  return {
    format: 'difformer-checkpoint',
    version: 1,
    config: {
      task: { name: 'translation', options: {} },
      model: { name: 'transformer', arch: 'transformer_tiny', options: {} },
      criterion: { name: 'label_smoothed_cross_entropy', options: {} },
      training: { bestCheckpointMetric: o.metric ?? 'bleu', maximizeBestCheckpointMetric: o.maximize ?? true },
    },
    dictionaries: { src: dict, tgt: dict },
    progress: { epoch: o.epoch ?? 1, iterationsInEpoch: 0, numUpdates: o.numUpdates, bestMetric: null, sinceBest: 0, wallSeconds: 0 },
    rng: [1, 2, 3, 4],
    optimizerStep: o.numUpdates,
    metrics: o.metrics ?? {},
  };
}

/** A checkpoint with weights a = [x, x+1], b = [[x]] and an optimizer entry. */
function write(path: string, x: number, m: CheckpointMeta, shapeA = [2]): string {
  const t = new Map<string, NamedArray>([
    ['model.a', f32(shapeA, shapeA[0] === 2 ? [x, x + 1] : [x, x + 1, x + 2])],
    ['model.b', f32([1, 1], [x])],
    ['optimizer.exp_avg.a', f32(shapeA, new Array<number>(shapeA[0]!).fill(9))],
  ]);
  writeSafetensors(path, t, { difformer: JSON.stringify(m) });
  return path;
}

const opts = (o: Partial<AverageOptions>): AverageOptions => ({ ...averageDefaults, ...o });

test('averageWeights: exact element-wise means (summed in float64)', () => {
  const w1 = new Map([['w', f32([2, 2], [1, 2, 3, 0.1])]]);
  const w2 = new Map([['w', f32([2, 2], [3, 5, -3, 0.2])]]);
  const out = averageWeights([{ source: 'one', weights: w1 }, { source: 'two', weights: w2 }]);
  assert.deepEqual(out.get('w')!.shape, [2, 2]);
  assert.deepEqual(Array.from(out.get('w')!.data), Array.from(Float32Array.from([2, 3.5, 0, (0.1 + 0.2) / 2])));
  assert.throws(() => averageWeights([{ source: 'one', weights: w1 }, { source: 'two', weights: new Map([['w', f32([4], [1, 2, 3, 4])]]) }]), /shape mismatch for w: one has \[2, 2\], two has \[4\]/);
  assert.throws(() => averageWeights([{ source: 'one', weights: w1 }, { source: 'two', weights: new Map([['v', f32([2, 2], [1, 2, 3, 4])]]) }]), /different parameters \(missing \[w\], extra \[v\]\)/);
  assert.throws(() => averageWeights([]), /no checkpoints to average/);
});

test('selection: best N in the metric direction, epochs and updates newest first, upper bound', () => {
  const best = ['checkpoint.best_bleu_20.10.safetensors', 'checkpoint.best_bleu_21.50.safetensors', 'checkpoint.best_bleu_19.00.safetensors', 'checkpoint.best_bleu_22.00.safetensors'];
  assert.deepEqual(selectCheckpoints(best, { mode: 'best', n: 2, maximize: true }), ['checkpoint.best_bleu_22.00.safetensors', 'checkpoint.best_bleu_21.50.safetensors']);
  const losses = ['checkpoint.best_nll_loss_3.20.safetensors', 'checkpoint.best_nll_loss_2.90.safetensors', 'checkpoint.best_nll_loss_10.00.safetensors'];
  assert.deepEqual(selectCheckpoints(losses, { mode: 'best', n: 2, maximize: false }), ['checkpoint.best_nll_loss_2.90.safetensors', 'checkpoint.best_nll_loss_3.20.safetensors']);
  assert.deepEqual(parseCheckpointName('/x/checkpoint.best_nll_loss_-1.25.safetensors'), { kind: 'best', metric: 'nll_loss', value: -1.25 });
  const epochs = ['checkpoint2.safetensors', 'checkpoint10.safetensors', 'checkpoint9.safetensors', 'checkpoint1.safetensors'];
  assert.deepEqual(selectCheckpoints(epochs, { mode: 'epoch', n: 2 }), ['checkpoint10.safetensors', 'checkpoint9.safetensors']); // numeric, not string order
  assert.deepEqual(selectCheckpoints(epochs, { mode: 'epoch', n: 2, upperBound: 9 }), ['checkpoint9.safetensors', 'checkpoint2.safetensors']);
  const updates = ['checkpoint_1_500.safetensors', 'checkpoint_2_1000.safetensors', 'checkpoint_2_1500.safetensors'];
  assert.deepEqual(selectCheckpoints(updates, { mode: 'update', n: 2 }), ['checkpoint_2_1500.safetensors', 'checkpoint_2_1000.safetensors']);
  assert.throws(() => selectCheckpoints(epochs, { mode: 'epoch', n: 5 }), /found 4 checkpoint<epoch> checkpoints, but 5 were asked for/);
  assert.throws(() => selectCheckpoints(['checkpoint_last.safetensors'], { mode: 'epoch', n: 1 }), /not checkpoint<epoch> checkpoint names: checkpoint_last\.safetensors/);
  assert.throws(() => selectCheckpoints([best[0]!, losses[0]!], { mode: 'best', n: 1, maximize: true }), /several metrics \(bleu, nll_loss\)/);
  // direction: flag > stored training config (same metric) > name
  assert.deepEqual(metricDirection('bleu', meta({ numUpdates: 1, maximize: false }), undefined), { maximize: false, source: 'checkpoint config' });
  assert.deepEqual(metricDirection('bleu', meta({ numUpdates: 1, maximize: false }), true), { maximize: true, source: 'flag' });
  assert.deepEqual(metricDirection('bleu', meta({ numUpdates: 1, metric: 'loss', maximize: false }), undefined), { maximize: true, source: 'metric name' });
  assert.deepEqual(metricDirection('loss', undefined, undefined), { maximize: false, source: 'metric name' });
});

test('average-checkpoints: best 2 of a directory by the stored direction; weights only, newest metadata, note', async () => {
  const dir = join(tmp.path, 'ck');
  mkdirSync(dir, { recursive: true });
  write(join(dir, 'checkpoint.best_bleu_10.00.safetensors'), 1, meta({ numUpdates: 100, metrics: { bleu: 10 } }));
  write(join(dir, 'checkpoint.best_bleu_12.00.safetensors'), 3, meta({ numUpdates: 200, metrics: { bleu: 12 } }));
  write(join(dir, 'checkpoint.best_bleu_13.50.safetensors'), 6, meta({ numUpdates: 300, epoch: 3, metrics: { bleu: 13.5 } }));
  write(join(dir, 'checkpoint3.safetensors'), 100, meta({ numUpdates: 300, epoch: 3 }));
  write(join(dir, 'checkpoint_last.safetensors'), 100, meta({ numUpdates: 300, epoch: 3 }));
  const out = join(tmp.path, 'avg', 'best2.safetensors');
  const used = await runAverageCheckpoints(opts({ inputs: [dir], output: out, numBestCheckpoints: 2 }));
  assert.deepEqual(used.map((f) => basename(f)), ['checkpoint.best_bleu_13.50.safetensors', 'checkpoint.best_bleu_12.00.safetensors']);
  const avg = loadCheckpoint(out);
  assert.deepEqual(Array.from(avg.weights.get('a')!.data), [4.5, 5.5]);
  assert.deepEqual(Array.from(avg.weights.get('b')!.data), [4.5]);
  assert.equal(avg.optimizer.expAvg.size, 0, 'optimizer state dropped');
  assert.equal(avg.meta.progress.numUpdates, 300);
  assert.equal(avg.meta.optimizerStep, 0);
  const note = (avg.meta as CheckpointMeta & { averaged: { description: string; metadataFrom: string; inputs: unknown[] } }).averaged;
  assert.match(note.description, /2 best by bleu \(higher is better, from the checkpoint config\)/);
  assert.match(note.metadataFrom, /best_bleu_13\.50/);
  assert.equal(note.inputs.length, 2);
  // --minimize overrides the stored direction
  const worst = await runAverageCheckpoints(opts({ inputs: [dir], output: out, numBestCheckpoints: 2, minimize: true }));
  assert.deepEqual(worst.map((f) => basename(f)), ['checkpoint.best_bleu_10.00.safetensors', 'checkpoint.best_bleu_12.00.safetensors']);
  // explicit files without a mode: all of them
  const files = await runAverageCheckpoints(opts({ inputs: [join(dir, 'checkpoint3.safetensors'), join(dir, 'checkpoint.best_bleu_10.00.safetensors')], output: out }));
  assert.equal(files.length, 2);
  assert.deepEqual(Array.from(loadCheckpoint(out).weights.get('b')!.data), [50.5]);
});

test('average-checkpoints: user errors', async () => {
  const dir = join(tmp.path, 'bad');
  mkdirSync(dir, { recursive: true });
  const a = write(join(dir, 'checkpoint1.safetensors'), 1, meta({ numUpdates: 10 }));
  const b = write(join(dir, 'checkpoint2.safetensors'), 2, meta({ numUpdates: 20 }), [3]);
  const c = write(join(dir, 'checkpoint3.safetensors'), 3, meta({ numUpdates: 30, dictHash: 'bbbb' }));
  const out = join(tmp.path, 'bad.safetensors');
  const isUser = (re: RegExp) => (e: unknown) => e instanceof DifformerError && re.test(e.message);
  await assert.rejects(runAverageCheckpoints(opts({ output: out })), isUser(/--inputs is required/));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [a, b], output: out })), isUser(/shape mismatch for a: .*checkpoint1\.safetensors has \[2\], .*checkpoint2\.safetensors has \[3\]/));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [a, c], output: out })), isUser(/checkpoint3\.safetensors has a source dictionary of 8 types, .*checkpoint1\.safetensors one of 8 \(same size, different symbols\)/));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [dir], output: out })), isUser(/names a directory: add --num-best-checkpoints/));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [dir], output: out, numBestCheckpoints: 2 })), isUser(/found 0 checkpoint\.best_<metric>_<value> checkpoints, but 2 were asked for/));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [dir], output: out, numEpochCheckpoints: 1, numBestCheckpoints: 1 })), isUser(/only one of/));
  writeFileSync(join(dir, 'junk.safetensors'), 'no');
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [join(dir, 'junk.safetensors'), a], output: out })), isUser(/junk\.safetensors/));
  // a checkpoint of another model is refused (its parameter names might even match)
  const other = meta({ numUpdates: 40 });
  other.config.model = { name: 'cmlm_transformer', arch: 'cmlm_tiny', options: {} };
  mkdirSync(join(tmp.path, 'other'), { recursive: true });
  const d = write(join(tmp.path, 'other', 'checkpoint4.safetensors'), 4, other);
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [a, d], output: out })), isUser(/checkpoint4\.safetensors holds a cmlm_transformer model, .*checkpoint1\.safetensors a transformer/));
  // writing over an input would lose its optimizer state; a folder as --output is one error, no temp file left
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [dir], output: c, numEpochCheckpoints: 1 })), isUser(/--output .*checkpoint3\.safetensors is one of the checkpoints being averaged/));
  const last = write(join(tmp.path, 'other', 'checkpoint_last.safetensors'), 5, meta({ numUpdates: 50 }));
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [a], output: last })), isUser(/would replace the point training resumes from/));
  const folder = join(tmp.path, 'a-folder');
  mkdirSync(folder, { recursive: true });
  await assert.rejects(runAverageCheckpoints(opts({ inputs: [a], output: folder })), isUser(/cannot write .*a-folder: is a directory/));
  assert.deepEqual(readdirSync(tmp.path).filter((f) => f.includes('.tmp-')), []);
  // the bin: one line on stderr, exit 1
  const r = runCli('difformer-average-checkpoints', ['--output', out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^difformer-average-checkpoints: error: --inputs is required/m);
  const ok = runCli('difformer-average-checkpoints', ['--inputs', dir, '--num-epoch-checkpoints', '1', '--output', out, '--log-format', 'none']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(Array.from(loadCheckpoint(out).weights.get('b')!.data), [3]);
});
