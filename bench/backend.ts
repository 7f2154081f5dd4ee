/**
 * Backend micro-benchmarks (run by hand): `node --import tsx bench/backend.ts [--quick]`.
 *
 * Prints, from one run (so the ratios share the machine's conditions):
 *   1. wasm matmul GFLOP/s: plain 2-D vs the transposeB flag vs a batched 3-D matmul;
 *   2. `linear` forward+backward: our custom gradient vs tf.matMul's own gradient, plus the
 *      weight-layout alternative ([in, out] storage) and forward-only costs;
 *   3. a small training step (embedding, FFN, tied output projection, softmax CE, Adam);
 *   4. the same on the experimental wasm threads (2 threads, in a child process, since the wasm
 *      module is created once per process);
 *   5. the cpu backend on one small size, for comparison.
 * Times are medians over repeated runs; on a shared 2-core machine expect +-15% noise.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { linear } from '../src/nn/linear.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const CHILD = args.includes('--child-threads');
const MIN_MS = QUICK ? 300 : 1200;

/** Median ms per call of f (which must leave no tensors behind), after warm-up. */
function time(f: () => void): number {
  for (let i = 0; i < 2; i++) f();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < 5 || (performance.now() - start < MIN_MS && samples.length < 200)) {
    const t0 = performance.now();
    f();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

type Row = { name: string; ms: number; gflops?: number; note?: string };

/** "2.3x slower than X" / "1.4x faster than X" for times a (this row) and b (reference). */
function rel(a: number, b: number, what: string): string {
  return a >= b ? `${(a / b).toFixed(2)}x slower than ${what}` : `${(b / a).toFixed(2)}x faster than ${what}`;
}

function matmulRows(label: string, m: number, k: number, n: number): Row[] {
  const flop = 2 * m * k * n;
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  const bT = tf.transpose(b);
  const batch = 8;
  const a3 = tf.randomNormal([batch, m / batch, k]);
  const b3 = tf.randomNormal([batch, k, n / batch]);
  const run = (f: () => tf.Tensor): number =>
    time(() => {
      const y = f();
      y.dataSync();
      y.dispose();
    });
  const plain = run(() => tf.matMul(a, b));
  const flagged = run(() => tf.matMul(a, bT, false, true));
  // batch x ([m/batch, k] x [k, n/batch]): 1/batch of the 2-D FLOPs, so compare per FLOP.
  const batchedFlop = 2 * batch * (m / batch) * k * (n / batch);
  const batched = run(() => tf.matMul(a3, b3));
  tf.dispose([a, b, bT, a3, b3]);
  return [
    { name: `${label} matMul plain 2-D [${m}x${k}]x[${k}x${n}]`, ms: plain, gflops: flop / plain / 1e6 },
    { name: `${label} matMul transposeB flag`, ms: flagged, gflops: flop / flagged / 1e6, note: rel(flagged, plain, 'plain') },
    {
      name: `${label} matMul batched 3-D [${batch}x${m / batch}x${k}]x[${batch}x${k}x${n / batch}]`,
      ms: batched,
      gflops: batchedFlop / batched / 1e6,
      note: `${rel(batched / batchedFlop, plain / flop, 'plain')} per FLOP`,
    },
  ];
}

/** fwd+bwd of L = sum(linear(x, W, b) * R) for the various implementations. */
function linearRows(label: string, n: number, inDim: number, outDim: number): Row[] {
  const flop = 3 * 2 * n * inDim * outDim;
  const x = tf.randomNormal([n, inDim]) as tf.Tensor2D;
  const w = tf.randomNormal([outDim, inDim]) as tf.Tensor2D;
  const wIO = tf.transpose(w) as tf.Tensor2D; // [in, out] storage alternative
  const b = tf.randomNormal([outDim]) as tf.Tensor1D;
  const r = tf.randomNormal([n, outDim]);
  const fb = (f: (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor, weight: tf.Tensor2D): number =>
    time(() => {
      const gs = tf.tidy(() =>
        tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(f(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D), r)))([
          x,
          weight,
          b,
        ]),
      );
      gs.forEach((g) => g.dataSync());
      tf.dispose(gs);
    });
  const fwd = (f: () => tf.Tensor): number =>
    time(() => {
      const y = tf.tidy(f);
      y.dataSync();
      y.dispose();
    });
  const ours = fb(linear, w);
  const tfGrad = fb((xx, ww, bb) => tf.add(tf.matMul(xx, ww, false, true), bb), w);
  // [in, out] storage: plain forward, and explicit transposes of W and x in the backward pass.
  const ioLayout = fb(
    tf.customGrad((xIn: tf.Tensor | tf.GradSaveFunc, wIn: tf.Tensor | tf.GradSaveFunc, bIn: tf.Tensor | tf.GradSaveFunc, save: tf.Tensor | tf.GradSaveFunc) => {
      const [xx, ww, bb] = [xIn as tf.Tensor2D, wIn as tf.Tensor2D, bIn as tf.Tensor1D];
      (save as tf.GradSaveFunc)([xx, ww]);
      return {
        value: tf.add(tf.matMul(xx, ww), bb),
        gradFunc: (dy: tf.Tensor2D, [sx, sw]: tf.Tensor[]) => [
          tf.matMul(dy, tf.transpose(sw as tf.Tensor2D)),
          tf.matMul(tf.transpose(sx as tf.Tensor2D), dy),
          // Column sums as a plain [1,N]x[N,out] GEMM: no transpose of dy needed.
          tf.reshape(tf.matMul(tf.ones([1, dy.shape[0]]), dy), [dy.shape[1]]),
        ],
      };
    }) as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D,
    wIO,
  );
  const fwdOurs = fwd(() => linear(x, w, b));
  const fwdIO = fwd(() => tf.add(tf.matMul(x, wIO), b));
  const fwdFused = fwd(() => tf.fused.matMul({ a: x, b: wIO, bias: b }));
  const dyT = tf.transpose(r);
  const sum0 = fwd(() => tf.sum(r, 0));
  const sum1 = fwd(() => tf.sum(dyT, 1));
  tf.dispose([x, w, wIO, b, r, dyT]);
  const shape = `[${n}x${inDim}]->[${outDim}]`;
  return [
    { name: `${label} linear fwd+bwd, custom grad ${shape}`, ms: ours, gflops: flop / ours / 1e6 },
    { name: `${label} linear fwd+bwd, tf.matMul's own grad`, ms: tfGrad, gflops: flop / tfGrad / 1e6, note: rel(tfGrad, ours, 'custom grad') },
    { name: `${label} linear fwd+bwd, weight stored [in,out]`, ms: ioLayout, gflops: flop / ioLayout / 1e6, note: rel(ioLayout, ours, 'custom grad') },
    { name: `${label} linear() fwd only (transposes W, fused bias)`, ms: fwdOurs },
    { name: `${label} fwd only, W stored [in,out], matMul + add`, ms: fwdIO, note: rel(fwdIO, fwdOurs, '[out,in]') },
    { name: `${label} fwd only, W stored [in,out], fused bias`, ms: fwdFused, note: rel(fwdFused, fwdOurs, '[out,in]') },
    { name: `${label} bias grad: sum(dy, 0) [${n}x${outDim}]`, ms: sum0 },
    { name: `${label} bias grad: sum(dyᵀ, 1)`, ms: sum1, note: rel(sum1, sum0, 'sum(dy, 0)') },
  ];
}

/** Embedding -> FFN -> tied output projection -> softmax CE, Adam. */
function trainStepRow(label: string): Row {
  const vocab = 4000;
  const d = 256;
  const ffn = 1024;
  const tokens = 512;
  const emb = tf.variable(tf.randomNormal([vocab, d], 0, 0.05), true, 'emb');
  const w1 = tf.variable(tf.randomNormal([ffn, d], 0, 0.05), true, 'w1');
  const b1 = tf.variable(tf.zeros([ffn]), true, 'b1');
  const w2 = tf.variable(tf.randomNormal([d, ffn], 0, 0.05), true, 'w2');
  const b2 = tf.variable(tf.zeros([d]), true, 'b2');
  const ids = tf.randomUniform([tokens], 0, vocab, 'int32');
  const targets = tf.oneHot(tf.randomUniform([tokens], 0, vocab, 'int32'), vocab);
  const opt = tf.train.adam(1e-3);
  const ms = time(() => {
    const loss = opt.minimize(() => {
      const h = tf.gather(emb, ids) as tf.Tensor2D;
      const f = tf.relu(linear(h, w1 as tf.Tensor2D, b1 as tf.Tensor1D));
      const o = tf.add(h, linear(f, w2 as tf.Tensor2D, b2 as tf.Tensor1D)) as tf.Tensor2D;
      const logits = linear(o, emb as tf.Tensor2D);
      return tf.losses.softmaxCrossEntropy(targets, logits) as tf.Scalar;
    }, true);
    loss?.dataSync();
    loss?.dispose();
  });
  const flop = 3 * 2 * tokens * (d * ffn * 2 + d * vocab);
  tf.dispose([emb, w1, b1, w2, b2, ids, targets]);
  opt.dispose();
  return { name: `${label} train step (${tokens} tok, d ${d}, ffn ${ffn}, vocab ${vocab}, Adam)`, ms, gflops: flop / ms / 1e6 };
}

function printTable(title: string, rows: Row[]): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  process.stdout.write(`\n${title}\n${'benchmark'.padEnd(w)}  ${'ms'.padStart(9)}  ${'GFLOP/s'.padStart(8)}  note\n`);
  for (const r of rows) {
    process.stdout.write(
      `${r.name.padEnd(w)}  ${r.ms.toFixed(2).padStart(9)}  ${(r.gflops === undefined ? '' : r.gflops.toFixed(1)).padStart(8)}  ${r.note ?? ''}\n`,
    );
  }
}

async function wasmRows(threads: boolean): Promise<Row[]> {
  const report = await initBackend({ backend: 'wasm', wasmThreads: threads, threads: threads ? 2 : undefined });
  const label = threads ? 'wasm 2thr' : 'wasm';
  process.stderr.write(`${label}: ${report.reason}\n`);
  const rows = [...matmulRows(label, 512, 512, 512)];
  if (!QUICK) rows.push(...matmulRows(label, 1024, 256, 1024));
  rows.push(...linearRows(label, 1024, 256, 1024));
  rows.push(trainStepRow(label));
  return rows;
}

if (CHILD) {
  process.stdout.write(JSON.stringify(await wasmRows(true)));
} else {
  const single = await wasmRows(false);
  printTable(`tfjs ${tf.version.tfjs}, wasm SIMD, 1 thread`, single);

  const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child-threads', ...(QUICK ? ['--quick'] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.status === 0) {
    const threaded = JSON.parse(child.stdout) as Row[];
    const rows = threaded.map((r, i) => ({ ...r, note: `speedup ${(single[i]!.ms / r.ms).toFixed(2)}x vs 1 thread` }));
    printTable('experimental wasm threads (2), separate process', rows);
  } else {
    process.stdout.write(`\nwasm threads run failed (exit ${String(child.status)})\n`);
  }

  await tf.setBackend('cpu');
  const cpu = [...matmulRows('cpu', 128, 128, 128), ...linearRows('cpu', 64, 128, 128).slice(0, 2)];
  await tf.setBackend('wasm');
  const wasmSmall = [...matmulRows('wasm', 128, 128, 128), ...linearRows('wasm', 64, 128, 128).slice(0, 2)];
  printTable(
    'cpu backend vs wasm, small sizes',
    cpu.flatMap((r, i) => [r, { ...wasmSmall[i]!, note: rel(wasmSmall[i]!.ms, r.ms, 'cpu') }]),
  );
}
