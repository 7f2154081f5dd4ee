/**
 * Training and generation speed, ours vs PyTorch on the same shapes, in one run (run by hand):
 *
 *   node --import tsx bench/speed.ts [--quick] [--only train,beam,diffusion] [--paths native,wasm]
 *        [--arch NAME-SUBSTRING] [--torch-threads auto|T,B] [--ours-blas-threads B] [--no-torch]
 *        [--steps N] [--rounds R]
 *
 * Every measurement runs in a fresh child process (tfjs backends and OpenBLAS thread pools are
 * process-global; peak RSS is per process): our toolkit with the native CPU kernels ("native"),
 * on plain wasm ("wasm", DIFFORMER_NATIVE=0), and bench/torch_models.py under /usr/bin/python3
 * with torch's intra-op threads T and OpenBLAS threads B. `--torch-threads auto` (default) first
 * times the transformer_iwslt_de_en training step under each (T, B) and uses the fastest for all
 * rows, so the PyTorch side runs at its best setting; our OpenBLAS pool gets the same size B. Rows:
 *
 *   train  transformer_iwslt_de_en / difformer_iwslt_de_en / transformer_tiny, --max-tokens 4096
 *          batches of ~20-token sentences, vocab 8000 (joined, tied embeddings), Adam; words/s =
 *          target tokens per second, as fairseq's wps
 *   beam   AR beam 5 on transformer_iwslt_de_en, every sentence decoded to exactly L tokens
 *          (min-len = max-len, so an untrained model decodes the same steps on both sides)
 *   diff   Difformer K = 20 steps, b = 1 and 7 x 3 candidates, lengths fixed to the source length
 *
 * The data are synthetic (bench/data.ts) but batched as training batches them; both sides read
 * the same batches (written to a JSON file for Python). The machine may be shared: our native
 * path and PyTorch run interleaved, `--rounds` times, and each side's best round is reported
 * (with the load average), so a busy neighbour slows both sides alike. Plain wasm runs once.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { chooseOpenBlasCoreType } from '../src/backend/native_kernels.js';
import { registerBuiltins } from '../src/cli/builtins.js';
import { createLogger } from '../src/log.js';
import { resolveOptions } from '../src/options.js';
import { getArchitecture, getCriterion } from '../src/registry.js';
import { Trainer } from '../src/train/trainer.js';
import { trainingDefaults } from '../src/train/trainer_options.js';
import type { Criterion, ModelDeps, TrainableModel } from '../src/train/types.js';
import { buildBeamSearchGenerator, generationDefaults, type AutoregressiveModel } from '../src/generate/generator.js';
import { buildDiffusionGenerator, diffusionGenerationDefaults, type DiffusionModel } from '../src/generate/diffusion_sampler.js';
import type { Batch } from '../src/data/language_pair_dataset.js';
import { batchJson, benchCorpus, generationBatch, trainBatches } from './data.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const VOCAB = 8000;
const CORPUS = 6000;
const SEED = 11;

/** One measurement, as both workers understand it (JSON on the command line). */
export interface Job {
  kind: 'train' | 'beam' | 'diffusion';
  arch: string;
  /** train: batches cycled through (after `warmup` untimed steps). */
  steps: number;
  warmup: number;
  maxTokens?: number;
  /** beam / diffusion: sentences per batch, decoded length (beam), candidates (diffusion). */
  bsz?: number;
  len?: number;
  beam?: number;
  b1?: number;
  b2?: number;
  decodingSteps?: number;
  /** Where the batches are written for Python. */
  dataFile?: string;
}

export interface JobResult {
  /** ms per step (train) or per generate call. */
  ms: number;
  /** target tokens/s (train) or sentences/s (generation). */
  rate: number;
  maxRssMB: number;
  note?: string;
}

// ---- data shared by both sides ------------------------------------------------------------

function jobBatches(job: Job): Batch[] {
  const prependBos = job.arch.startsWith('difformer');
  const corpus = benchCorpus(VOCAB, CORPUS, SEED, prependBos);
  if (job.kind === 'train') return trainBatches(corpus, job.maxTokens ?? 4096, 3, 21);
  return [generationBatch(corpus, job.bsz ?? 16, 20)];
}

// ---- our side ------------------------------------------------------------------------------

function buildModel(arch: string, overrides: object): { model: TrainableModel; deps: ModelDeps; name: string } {
  registerBuiltins();
  const corpus = benchCorpus(VOCAB, 10, SEED, false);
  const { model: mc, preset } = getArchitecture<object, TrainableModel, ModelDeps>(arch);
  const deps: ModelDeps = { srcDict: corpus.dict, tgtDict: corpus.dict, seed: 1 };
  const shared = mc.name === 'transformer' ? { shareAllEmbeddings: true, dropout: 0.3 } : {};
  return { model: mc.build(resolveOptions<object>(mc.defaults, preset, shared, overrides), deps), deps, name: mc.name };
}

/** Difformer draws its self-conditioning coin per batch; both sides alternate it instead (on, off,
 *  on, ...) so they do the same work (1.5 forward passes per step on average). */
function alternateSelfCond(model: TrainableModel): TrainableModel {
  type Fwd = (s: unknown, t: unknown, training: boolean, draws?: { selfCond?: boolean }) => unknown;
  const proto = model as unknown as { forward: Fwd };
  let step = 0;
  const wrapped = Object.create(model) as { forward: Fwd };
  wrapped.forward = (s, t, training, draws = {}) => proto.forward.call(model, s, t, training, { ...draws, selfCond: draws.selfCond ?? step++ % 2 === 0 });
  return wrapped as unknown as TrainableModel;
}

function oursTrain(job: Job): JobResult {
  const batches = jobBatches(job);
  const built = buildModel(job.arch, {});
  const { deps, name } = built;
  const model = name === 'difformer' ? alternateSelfCond(built.model) : built.model;
  const critName = name === 'transformer' ? 'label_smoothed_cross_entropy' : 'difformer';
  const cc = getCriterion<object, Criterion>(critName);
  const criterion: Criterion = cc.build(resolveOptions<object>(cc.defaults, { labelSmoothing: 0.1 }));
  criterion.check(model);
  // fairseq's IWSLT recipe: Adam (0.9, 0.98), wd 1e-4, inverse_sqrt warmup 4000, lr 5e-4.
  const opts = resolveOptions(trainingDefaults, {
    lr: 5e-4, lrScheduler: 'inverse_sqrt' as const, warmupUpdates: 4000, adamBetas: [0.9, 0.98], weightDecay: 1e-4,
    maxTokens: job.maxTokens ?? 4096, noSave: true, disableValidation: true, seed: 1,
  });
  const corpus = benchCorpus(VOCAB, 64, SEED, name === 'difformer');
  const trainer = new Trainer(opts, {
    model, criterion, train: corpus.dataset, valid: undefined, dicts: { src: deps.srcDict, tgt: deps.tgtDict },
    config: { task: { name: 'translation', options: {} }, model: { name, arch: job.arch, options: {} }, criterion: { name: critName, options: {} }, training: opts },
    log: createLogger('none'), maxSourcePositions: 1024, maxTargetPositions: 1024,
  });
  for (let i = 0; i < job.warmup; i++) trainer.step([batches[i % batches.length]!]);
  let tokens = 0;
  const t0 = performance.now();
  for (let i = 0; i < job.steps; i++) {
    const b = batches[i % batches.length]!;
    trainer.step([b]);
    tokens += b.ntokens;
  }
  const ms = (performance.now() - t0) / job.steps;
  return { ms, rate: tokens / (ms * job.steps / 1000), maxRssMB: process.resourceUsage().maxRSS / 1024, note: `${batches.map((b) => `${b.bsz}x${b.srcLen}/${b.tgtLen}`).join(' ')}` };
}

function timeGenerate(job: Job, batch: Batch, run: () => void): JobResult {
  for (let i = 0; i < job.warmup; i++) run();
  const t0 = performance.now();
  for (let i = 0; i < job.steps; i++) run();
  const ms = (performance.now() - t0) / job.steps;
  return { ms, rate: batch.bsz / (ms / 1000), maxRssMB: process.resourceUsage().maxRSS / 1024 };
}

function oursBeam(job: Job): JobResult {
  const [batch] = jobBatches(job) as [Batch];
  const { model, deps } = buildModel(job.arch, { dropout: 0 });
  const len = job.len ?? 24;
  const gen = buildBeamSearchGenerator(model as unknown as AutoregressiveModel<unknown, unknown>, deps.tgtDict, {
    ...generationDefaults, beam: job.beam ?? 5, maxLenA: 0, maxLenB: len, minLen: len,
  });
  const r = timeGenerate(job, batch, () => void gen.generate(batch));
  return { ...r, note: `${batch.bsz} sentences, ${len + 1} steps` };
}

function oursDiffusion(job: Job): JobResult {
  const [batch] = jobBatches(job) as [Batch];
  const { model, deps } = buildModel(job.arch, {});
  const dm = model as unknown as DiffusionModel;
  // Lengths fixed to the source lengths: an untrained length head would pick arbitrary ones.
  const fixed: DiffusionModel = Object.create(dm, { predictLengths: { value: () => Int32Array.from(batch.srcLengths) } }) as DiffusionModel;
  const gen = buildDiffusionGenerator(fixed, {
    tgtDict: deps.tgtDict,
    options: { ...diffusionGenerationDefaults, decodingSteps: job.decodingSteps ?? 20, lengthBeamSize: job.b1 ?? 1, noiseBeamSize: job.b2 ?? 1 },
    seed: 1,
  });
  const r = timeGenerate(job, batch, () => void gen.generate(batch));
  return { ...r, note: `${batch.bsz} sentences x ${(job.b1 ?? 1) * (job.b2 ?? 1)} candidates` };
}

async function childMain(job: Job): Promise<void> {
  const report = await initBackend({ backend: 'wasm' });
  const r = job.kind === 'train' ? oursTrain(job) : job.kind === 'beam' ? oursBeam(job) : oursDiffusion(job);
  r.note = `${report.reason}; ${r.note ?? ''}`;
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
  void tf;
}

// ---- orchestration -------------------------------------------------------------------------

interface Side {
  label: string;
  run(job: Job): JobResult | string;
}

function parseResult(out: string, err: string, status: number | null): JobResult | string {
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (line === undefined) return `failed (exit ${status}): ${(err || out).trim().split('\n').slice(-3).join(' | ')}`;
  return JSON.parse(line.slice(7)) as JobResult;
}

/** Our toolkit in a child process; `blasThreads` sizes OpenBLAS's pool (the same as PyTorch's). */
function oursSide(native: boolean, blasThreads: number | undefined): Side {
  return {
    label: native ? `ours (wasm + native${blasThreads !== undefined ? `, BLAS ${blasThreads} thr` : ''})` : 'ours (plain wasm)',
    run(job) {
      const threads = blasThreads !== undefined ? { OPENBLAS_NUM_THREADS: String(blasThreads) } : {};
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(job)], {
        encoding: 'utf8',
        env: { ...process.env, ...threads, DIFFORMER_NATIVE: native ? '1' : '0', DIFFORMER_NO_PROGRESS: '1' },
        maxBuffer: 64 << 20,
      });
      return parseResult(r.stdout, r.stderr, r.status);
    },
  };
}

function torchSide(threads: [number, number]): Side {
  return {
    label: `PyTorch (torch ${threads[0]} thr, BLAS ${threads[1]} thr)`,
    run(job) {
      const r = spawnSync('/usr/bin/python3', [join(HERE, 'torch_models.py'), '--job', JSON.stringify(job), '--threads', String(threads[0])], {
        encoding: 'utf8',
        env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads[1]), OMP_NUM_THREADS: String(threads[0]) },
        maxBuffer: 64 << 20,
      });
      return parseResult(r.stdout, r.stderr, r.status);
    },
  };
}

function fmtRate(r: JobResult | string, kind: Job['kind']): string {
  if (typeof r === 'string') return r;
  const unit = kind === 'train' ? 'w/s' : 'sent/s';
  return `${r.ms.toFixed(0).padStart(7)} ms  ${r.rate.toFixed(kind === 'train' ? 0 : 2).padStart(8)} ${unit}  ${r.maxRssMB.toFixed(0).padStart(6)} MB`;
}

function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

/** The better (faster) of two results; failures lose. */
function best(a: JobResult | string | undefined, b: JobResult | string): JobResult | string {
  if (a === undefined || typeof a === 'string') return b;
  if (typeof b === 'string') return a;
  return b.ms < a.ms ? { ...b, maxRssMB: Math.max(a.maxRssMB, b.maxRssMB) } : { ...a, maxRssMB: Math.max(a.maxRssMB, b.maxRssMB) };
}

function main(): void {
  const args = process.argv.slice(2);
  const get = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const quick = args.includes('--quick');
  const only = (get('--only') ?? 'train,beam,diffusion').split(',');
  const paths = (get('--paths') ?? 'native,wasm').split(',');
  const steps = Number(get('--steps') ?? (quick ? 2 : 4));
  const rounds = Number(get('--rounds') ?? (quick ? 1 : 2));
  const archFilter = get('--arch');
  const dir = mkdtempSync(join(tmpdir(), 'difformer-bench-'));
  // Both sides get the kernel family our toolkit would pick (it sets the variable for itself
  // when unset; PyTorch's OpenBLAS would otherwise fall back to generic kernels on this CPU).
  if (process.env['OPENBLAS_CORETYPE'] === undefined) {
    const core = chooseOpenBlasCoreType(readFileSync('/proc/cpuinfo', 'utf8'));
    if (core !== undefined) process.env['OPENBLAS_CORETYPE'] = core;
  }
  console.log(`OPENBLAS_CORETYPE=${process.env['OPENBLAS_CORETYPE'] ?? '(unset: OpenBLAS picks)'}; load average at start ${loadavg()}; ${rounds} round(s), best of rounds per side`);
  try {
    const jobs: { name: string; job: Job }[] = [];
    const add = (name: string, job: Job): void => {
      if (!only.includes(job.kind) || (archFilter !== undefined && !name.includes(archFilter))) return;
      job.dataFile = join(dir, `${jobs.length}.json`);
      writeFileSync(job.dataFile, JSON.stringify({ vocab: VOCAB, batches: jobBatches(job).map(batchJson) }));
      jobs.push({ name, job });
    };
    add('train transformer_iwslt_de_en', { kind: 'train', arch: 'transformer_iwslt_de_en', steps, warmup: 2, maxTokens: 4096 });
    add('train difformer_iwslt_de_en', { kind: 'train', arch: 'difformer_iwslt_de_en', steps, warmup: 2, maxTokens: 4096 });
    add('train transformer_tiny', { kind: 'train', arch: 'transformer_tiny', steps: steps * 3, warmup: 2, maxTokens: 4096 });
    add('beam 5, transformer_iwslt_de_en', { kind: 'beam', arch: 'transformer_iwslt_de_en', steps: quick ? 1 : 2, warmup: 1, bsz: 32, len: 24, beam: 5 });
    add('difformer K=20, b=1', { kind: 'diffusion', arch: 'difformer_iwslt_de_en', steps: quick ? 1 : 2, warmup: 1, bsz: 32, b1: 1, b2: 1, decodingSteps: 20 });
    add('difformer K=20, 7x3', { kind: 'diffusion', arch: 'difformer_iwslt_de_en', steps: 1, warmup: 1, bsz: 4, b1: 7, b2: 3, decodingSteps: 20 });

    let threads: [number, number] = [1, 2];
    const tArg = get('--torch-threads') ?? 'auto';
    const withTorch = !args.includes('--no-torch');
    if (withTorch && tArg === 'auto') {
      const calib: Job = { kind: 'train', arch: 'transformer_iwslt_de_en', steps: 2, warmup: 1, maxTokens: 4096 };
      calib.dataFile = join(dir, 'calib.json');
      writeFileSync(calib.dataFile, JSON.stringify({ vocab: VOCAB, batches: jobBatches(calib).map(batchJson) }));
      let bestMs = Infinity;
      for (const t of [[1, 2], [2, 1], [2, 2], [1, 1]] as [number, number][]) {
        const r = torchSide(t).run(calib);
        console.log(`calibration: torch threads ${t[0]}, OpenBLAS threads ${t[1]}: ${fmtRate(r, 'train')}`);
        if (typeof r !== 'string' && r.ms < bestMs) {
          bestMs = r.ms;
          threads = t;
        }
      }
      console.log(`PyTorch runs with torch.set_num_threads(${threads[0]}), OPENBLAS_NUM_THREADS=${threads[1]}\n`);
    } else if (tArg !== 'auto') {
      threads = tArg.split(',').map(Number) as [number, number];
    }
    // Same OpenBLAS pool size on both sides (PyTorch's best), unless --ours-blas-threads says otherwise.
    const oursBlas = get('--ours-blas-threads') !== undefined ? Number(get('--ours-blas-threads')) : withTorch ? threads[1] : undefined;
    const native = paths.includes('native') ? oursSide(true, oursBlas) : undefined;
    const wasm = paths.includes('wasm') ? oursSide(false, undefined) : undefined;
    const torch = withTorch ? torchSide(threads) : undefined;

    const rows: string[] = [];
    for (const { name, job } of jobs) {
      // Interleave the fast sides so both see the same machine load; take each side's best round.
      let rn: JobResult | string | undefined;
      let rt: JobResult | string | undefined;
      for (let r = 0; r < rounds; r++) {
        if (native) rn = best(rn, native.run(job));
        if (torch) rt = best(rt, torch.run(job));
      }
      const rw = wasm?.run(job);
      console.log(`${name}  (load ${loadavg()})`);
      const ratio = (x: JobResult | string | undefined): string =>
        x !== undefined && typeof x !== 'string' && rt !== undefined && typeof rt !== 'string' ? `${(x.rate / rt.rate).toFixed(2)}x` : '';
      for (const [side, r] of [[native, rn], [wasm, rw], [torch, rt]] as [Side | undefined, JobResult | string | undefined][]) {
        if (side === undefined || r === undefined) continue;
        const isOurs = side !== torch;
        const note = typeof r !== 'string' && r.note ? `  [${r.note}]` : '';
        console.log(`  ${side.label.padEnd(34)} ${fmtRate(r, job.kind)}${isOurs && ratio(r) ? `  ${ratio(r)} PyTorch` : ''}${note}`);
        if (typeof r !== 'string') rows.push(`| ${name} | ${side.label} | ${r.ms.toFixed(0)} | ${r.rate.toFixed(job.kind === 'train' ? 0 : 2)} | ${r.maxRssMB.toFixed(0)} | ${isOurs ? ratio(r) : '1.00x'} |`);
        else rows.push(`| ${name} | ${side.label} | ${r.slice(0, 60)} | | | |`);
      }
    }
    console.log(`\nload average at the end ${loadavg()}`);
    console.log('\n| job | side | ms/step | words/s or sent/s | peak RSS MB | vs PyTorch |\n|---|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(r);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const childIdx = process.argv.indexOf('--child');
if (childIdx >= 0) {
  await childMain(JSON.parse(process.argv[childIdx + 1]!) as Job);
} else {
  main();
}
