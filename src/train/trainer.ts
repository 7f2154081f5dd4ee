/**
 * The training loop every model uses (fairseq_cli/train.py + trainer.py, v0.10.2, in one
 * readable order). Per update: set lr; accumulate gradients over --update-freq batches;
 * divide by the summed sample size; clip; Adam step; log; validate/save at intervals; stop
 * checks. Progress (epoch, position in epoch, updates, RNG, optimizer, best metric) is saved in
 * every checkpoint, so a run killed at any point resumes from checkpoint_last exactly.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { copyFileAtomic } from '../atomic.js';
import { optionChanges } from '../options.js';
import type { Batch, BatchingOptions, LanguagePairDataset } from '../data/language_pair_dataset.js';
import { shuffled } from '../data/language_pair_dataset.js';
import { DifformerError } from '../errors.js';
import type { Logger } from '../log.js';
import { Rng } from '../nn/params.js';
import { createProgress } from '../progress.js';
import {
  checkpointNames,
  dictionaryInfo,
  loadCheckpoint,
  loadOptimizerState,
  loadWeights,
  checkDictionaries,
  pruneCheckpoints,
  saveCheckpoint,
  type CheckpointConfig,
  type TrainProgress,
} from './checkpoint.js';
import { learningRate, type LrSchedulerName } from './lr_scheduler.js';
import { trainingDefaults } from './trainer_options.js';
import { Adam, scaleAndClip, variableGradsLowMemory } from './optimizer.js';
import type { Criterion, LogSums, TrainableModel } from './types.js';
import type { Dictionary } from '../data/dictionary.js';

export interface TrainingOptions {
  optimizer: 'adam';
  adamBetas: number[];
  adamEps: number;
  weightDecay: number;
  lr: number;
  lrScheduler: LrSchedulerName;
  warmupUpdates: number;
  warmupInitLr: number;
  minLr: number;
  clipNorm: number;
  updateFreq: number;
  maxTokens: number | undefined;
  batchSize: number | undefined;
  requiredBatchSizeMultiple: number;
  maxUpdate: number;
  maxEpoch: number;
  /** fairseq --stop-time-hours: stop once the cumulative training time (across resumes) reaches this (0 = off). */
  stopTimeHours: number;
  seed: number;
  saveDir: string;
  saveInterval: number;
  saveIntervalUpdates: number;
  keepIntervalUpdates: number;
  keepLastEpochs: number;
  keepBestCheckpoints: number;
  noEpochCheckpoints: boolean;
  noSave: boolean;
  bestCheckpointMetric: string;
  maximizeBestCheckpointMetric: boolean;
  patience: number;
  validateInterval: number;
  validateIntervalUpdates: number;
  disableValidation: boolean;
  logInterval: number;
  restoreFile: string;
  resetOptimizer: boolean;
  /** fairseq's finer resets, for a resume that keeps the optimizer (--reset-optimizer implies all). */
  resetDataloader: boolean;
  resetMeters: boolean;
  resetLrScheduler: boolean;
  /** fairseq's --finetune-from-model: weights only, used when the save dir has no checkpoint_last yet. */
  finetuneFromModel: string | undefined;
  trainSubset: string;
  validSubset: string;
}

export interface TrainDeps<M extends TrainableModel> {
  model: M;
  criterion: Criterion<M>;
  train: LanguagePairDataset;
  valid: LanguagePairDataset | undefined;
  dicts: { src: Dictionary; tgt: Dictionary };
  config: CheckpointConfig;
  log: Logger;
  /** Extra validation metrics (e.g. BLEU from decoding valid), computed after the valid loss. */
  evaluate?: (model: M) => Promise<Record<string, number>>;
  /** Batching limits from the task (max positions). */
  maxSourcePositions: number;
  maxTargetPositions: number;
}

export interface TrainSummary {
  numUpdates: number;
  epoch: number;
  lastTrainLoss: number;
  bestMetric: number | null;
  stoppedBecause: string;
}

/** fairseq's number formatting in logs: 3 decimals for losses, %g-like for lr. */
function fmt(key: string, v: number): string {
  if (key.endsWith('lr')) return v.toPrecision(6).replace(/\.?0+(e|$)/, '$1');
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(3);
}

function formatStats(prefix: string, stats: Record<string, number>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(stats)) out[`${prefix}${k}`] = fmt(k, v);
  return out;
}

function emptySums(): LogSums {
  return { values: {}, sampleSize: 0, ntokens: 0, nsentences: 0 };
}

/** Adds `b`'s sums into `a`. */
function mergeSums(a: LogSums, b: LogSums): void {
  for (const [k, v] of Object.entries(b.values)) a.values[k] = (a.values[k] ?? 0) + v;
  a.sampleSize += b.sampleSize;
  a.ntokens += b.ntokens;
  a.nsentences += b.nsentences;
}

function addSums(a: LogSums, values: Record<string, number>, sampleSize: number, batch: Batch): void {
  mergeSums(a, { values, sampleSize, ntokens: batch.ntokens, nsentences: batch.bsz });
}

export class Trainer<M extends TrainableModel> {
  readonly optimizer: Adam;
  progress: TrainProgress = { epoch: 1, iterationsInEpoch: 0, numUpdates: 0, bestMetric: null, sinceBest: 0, wallSeconds: 0 };
  private readonly batching: BatchingOptions;
  private readonly trainBatches: number[][];
  private readonly paramNames = new Map<string, string>(); // tf variable name -> parameter name
  private startTime = Date.now();
  private lastMetrics: Record<string, number> = {};
  lastTrainLoss = NaN;

  constructor(
    readonly opts: TrainingOptions,
    readonly deps: TrainDeps<M>,
  ) {
    const b = opts.adamBetas;
    this.optimizer = new Adam({ betas: [b[0] ?? 0.9, b[1] ?? 0.999], eps: opts.adamEps, weightDecay: opts.weightDecay });
    if (!(opts.lr > 0)) throw new DifformerError('DIFFORMER_BAD_OPTION', `--lr must be positive (got ${opts.lr})`);
    if (opts.maxTokens === undefined && opts.batchSize === undefined) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', 'give --max-tokens or --batch-size');
    }
    this.batching = {
      maxTokens: opts.maxTokens,
      batchSize: opts.batchSize,
      requiredBatchSizeMultiple: opts.requiredBatchSizeMultiple,
      maxSourcePositions: deps.maxSourcePositions,
      maxTargetPositions: deps.maxTargetPositions,
    };
    const { kept, skipped, overMaxTokens } = deps.train.validIndices(this.batching, true);
    if (kept.length === 0) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `no usable training pairs (${skipped} skipped as empty or too long)`);
    const other = skipped - overMaxTokens;
    if (other > 0) deps.log.warn({ skipped: other }, `skipped ${other} training pairs (empty, or longer than --max-source/target-positions)`);
    if (overMaxTokens > 0) {
      deps.log.warn({ skipped: overMaxTokens, maxTokens: this.batching.maxTokens }, `skipped ${overMaxTokens} training pairs longer than --max-tokens ${this.batching.maxTokens} (no batch can hold them; raise --max-tokens to train on them)`);
    }
    this.trainBatches = deps.train.batches(kept, this.batching);
    for (const [name, v] of Object.entries(deps.model.params.toRecord())) this.paramNames.set(v.name, name);
  }

  get batchesPerEpoch(): number {
    return this.trainBatches.length;
  }

  // ---- checkpoints -------------------------------------------------------------------------

  /**
   * Restores from --restore-file (relative to --save-dir) when it exists; else, with
   * --finetune-from-model, loads only that model's weights (fresh optimizer, counters, schedule),
   * so the same command first starts a fine-tune and later resumes it from checkpoint_last.
   */
  restore(): boolean {
    const file = this.opts.restoreFile;
    if (this.opts.finetuneFromModel !== undefined && (this.opts.resetOptimizer || file !== trainingDefaults.restoreFile)) {
      // as fairseq: a fine-tune resumes from its own checkpoint_last, with its optimizer
      throw new DifformerError('DIFFORMER_BAD_OPTION', '--finetune-from-model cannot be combined with --reset-optimizer or --restore-file');
    }
    let path = existsSync(file) && file.includes('/') ? file : join(this.opts.saveDir, file);
    let weightsOnly = this.opts.resetOptimizer;
    if (!existsSync(path)) {
      const init = this.opts.finetuneFromModel;
      if (init === undefined) return false;
      if (!existsSync(init)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `--finetune-from-model: checkpoint not found: ${init}`);
      path = init;
      weightsOnly = true;
    }
    const ckpt = loadCheckpoint(path);
    checkDictionaries(ckpt, this.deps.dicts.src, this.deps.dicts.tgt);
    if (ckpt.meta.config.model.arch !== this.deps.config.model.arch) {
      throw new DifformerError(
        'DIFFORMER_BAD_CHECKPOINT',
        `${path} holds a '${ckpt.meta.config.model.arch}' model but --arch is '${this.deps.config.model.arch}'; use another --save-dir or the same --arch`,
      );
    }
    // as fairseq, the command line wins; but a changed option can change what trained weights mean
    // (e.g. --pred-length-offset), so say which differ
    const changed = optionChanges(ckpt.meta.config.model.options, this.deps.config.model.options);
    if (changed.length > 0) {
      this.deps.log.warn({ path, changed }, `model options differ from ${path}, the command line's are used: ${changed.join(', ')}`);
    }
    loadWeights(this.deps.model.params, ckpt.weights);
    if (!weightsOnly) {
      loadOptimizerState(this.optimizer, ckpt, this.deps.model.params);
      this.progress = { ...ckpt.meta.progress };
      this.deps.model.params.rng.setState(ckpt.meta.rng);
      // --reset-lr-scheduler has nothing to reset here: fixed and inverse_sqrt keep no state
      // (the rate follows the update count, which fairseq also keeps under this flag)
      if (this.opts.resetDataloader) Object.assign(this.progress, { epoch: 1, iterationsInEpoch: 0 });
      if (this.opts.resetMeters) this.progress.wallSeconds = 0; // also restarts --stop-time-hours
    }
    this.deps.log.info(
      { path, epoch: this.progress.epoch, numUpdates: this.progress.numUpdates, resetOptimizer: weightsOnly, resetDataloader: this.opts.resetDataloader, resetMeters: this.opts.resetMeters },
      weightsOnly
        ? `loaded the weights of ${path}; optimizer, counters and schedule start afresh`
        : `loaded checkpoint ${path} (epoch ${this.progress.epoch} @ ${this.progress.numUpdates} updates)`,
    );
    return true;
  }

  /** Cumulative training time: what earlier runs (and saves) recorded plus this run since then. */
  private trainWallSeconds(): number {
    return this.progress.wallSeconds + (Date.now() - this.startTime) / 1000;
  }

  /** Saves checkpoint_last plus copies; `finishedEpoch` is set at an epoch's end. */
  private save(finishedEpoch?: number): void {
    const o = this.opts;
    if (o.noSave) return;
    mkdirSync(o.saveDir, { recursive: true });
    const p = this.progress;
    p.wallSeconds += (Date.now() - this.startTime) / 1000;
    this.startTime = Date.now();
    const meta = {
      config: this.deps.config,
      dictionaries: { src: dictionaryInfo(this.deps.dicts.src), tgt: dictionaryInfo(this.deps.dicts.tgt) },
      progress: { ...p },
      rng: this.deps.model.params.rng.getState(),
      optimizerStep: this.optimizer.step,
      metrics: { ...this.lastMetrics },
    };
    const last = join(o.saveDir, checkpointNames.last());
    saveCheckpoint(last, this.deps.model.params, this.optimizer, meta);
    const copies: string[] = [];
    if (finishedEpoch !== undefined && !o.noEpochCheckpoints && finishedEpoch % o.saveInterval === 0) copies.push(checkpointNames.epoch(finishedEpoch));
    if (finishedEpoch === undefined && o.saveIntervalUpdates > 0 && p.numUpdates % o.saveIntervalUpdates === 0) copies.push(checkpointNames.updates(p.epoch, p.numUpdates));
    const metric = this.lastMetrics[o.bestCheckpointMetric];
    if (metric !== undefined && p.bestMetric === metric && p.sinceBest === 0) {
      copies.push(checkpointNames.best());
      if (o.keepBestCheckpoints > 0) copies.push(checkpointNames.bestOf(o.bestCheckpointMetric, metric));
    }
    for (const name of copies) copyFileAtomic(last, join(o.saveDir, name));
    // pruning, as fairseq: newest N interval/epoch checkpoints, best N by score
    if (o.keepIntervalUpdates > 0) pruneCheckpoints(o.saveDir, /^checkpoint_\d+_(\d+)\.safetensors$/, o.keepIntervalUpdates, (a, b) => b - a);
    if (o.keepLastEpochs > 0) pruneCheckpoints(o.saveDir, /^checkpoint(\d+)\.safetensors$/, o.keepLastEpochs, (a, b) => b - a);
    if (o.keepBestCheckpoints > 0) {
      const re = new RegExp(`^checkpoint\\.best_${o.bestCheckpointMetric}_(-?[\\d.]+)\\.safetensors$`);
      pruneCheckpoints(o.saveDir, re, o.keepBestCheckpoints, o.maximizeBestCheckpointMetric ? (a, b) => b - a : (a, b) => a - b);
    }
    this.deps.log.info({ path: last, copies, numUpdates: p.numUpdates }, `saved checkpoint ${last}`);
  }

  // ---- one update ----------------------------------------------------------------------------

  /** Forward/backward over the update's batches, clip, Adam step. Returns the logged sums. */
  step(batches: Batch[]): { sums: LogSums; gnorm: number; lr: number } {
    const { model, criterion } = this.deps;
    const vars = model.params.trainableVariables();
    const lr = learningRate({ scheduler: this.opts.lrScheduler, lr: this.opts.lr, warmupUpdates: this.opts.warmupUpdates, warmupInitLr: this.opts.warmupInitLr }, this.progress.numUpdates);
    const sums = emptySums();
    let acc: Map<string, tf.Tensor> | undefined;
    for (const batch of batches) {
      let keys: string[] = [];
      let logT: tf.Tensor | undefined;
      let sampleSize = 0;
      const { value, grads } = variableGradsLowMemory(() => {
        const out = criterion.forward(model, batch, true);
        keys = Object.keys(out.logging);
        sampleSize = out.sampleSize;
        logT = tf.keep(tf.stack(keys.map((k) => out.logging[k]!)));
        return out.loss;
      }, vars);
      value.dispose();
      const logged = logT!.dataSync();
      logT!.dispose();
      addSums(sums, Object.fromEntries(keys.map((k, i) => [k, logged[i]!])), sampleSize, batch);
      if (!acc) {
        acc = new Map(Object.entries(grads).map(([k, g]) => [this.paramNames.get(k) ?? k, g]));
      } else {
        for (const [k, g] of Object.entries(grads)) {
          const name = this.paramNames.get(k) ?? k;
          const prev = acc.get(name);
          acc.set(name, prev ? tf.tidy(() => prev.add(g)) : g);
          if (prev) {
            prev.dispose();
            g.dispose();
          }
        }
      }
    }
    const grads = acc!;
    const gnorm = scaleAndClip(grads, 1 / Math.max(1, sums.sampleSize), this.opts.clipNorm);
    const loss = sums.values.loss ?? NaN;
    if (!Number.isFinite(gnorm) || !Number.isFinite(loss)) {
      for (const g of grads.values()) g.dispose();
      throw new DifformerError(
        'DIFFORMER_NAN_LOSS',
        `loss is ${loss} (gradient norm ${gnorm}) at update ${this.progress.numUpdates + 1}; lower --lr, raise --warmup-updates or set --clip-norm. The last checkpoint in ${this.opts.saveDir} is intact.`,
      );
    }
    const params = new Map(Object.entries(model.params.toRecord()));
    this.optimizer.apply(params, grads, lr);
    for (const g of grads.values()) g.dispose();
    this.progress.numUpdates += 1;
    return { sums, gnorm, lr };
  }

  // ---- validation ----------------------------------------------------------------------------

  async validate(): Promise<Record<string, number>> {
    const { valid, model, criterion } = this.deps;
    const out: Record<string, number> = {};
    if (!valid) return out;
    const { kept } = valid.validIndices(this.batching, true);
    const sums = emptySums();
    // validation draws its randomness (diffusion t, noise) from a fixed seed, as fairseq's
    // --fixed-validation-seed, and leaves the training RNG where it was
    const rng = model.params.rng;
    const saved = rng.getState();
    rng.setState(new Rng(this.opts.seed + 7).getState());
    for (const idx of valid.batches(kept, this.batching)) {
      const batch = valid.collate(idx);
      const vals = tf.tidy(() => {
        const o = criterion.forward(model, batch, false);
        const keys = Object.keys(o.logging);
        const data = tf.stack(keys.map((k) => o.logging[k]!)).dataSync();
        return { keys, data: Array.from(data), sampleSize: o.sampleSize };
      });
      addSums(sums, Object.fromEntries(vals.keys.map((k, i) => [k, vals.data[i]!])), vals.sampleSize, batch);
    }
    rng.setState(saved);
    Object.assign(out, criterion.reduce(sums));
    if (this.deps.evaluate) Object.assign(out, await this.deps.evaluate(model));
    return out;
  }

  /** Updates best/patience bookkeeping from a validation result; logs it fairseq-style. */
  private recordValidation(stats: Record<string, number>): void {
    const p = this.progress;
    const key = this.opts.bestCheckpointMetric;
    const v = stats[key];
    this.lastMetrics = stats;
    if (v === undefined) {
      this.deps.log.warn({ metric: key }, `--best-checkpoint-metric ${key} was not computed in validation (known: ${Object.keys(stats).join(', ')})`);
    } else {
      const better = p.bestMetric === null || (this.opts.maximizeBestCheckpointMetric ? v > p.bestMetric : v < p.bestMetric);
      if (better) {
        p.bestMetric = v;
        p.sinceBest = 0;
      } else p.sinceBest += 1;
    }
    const best = p.bestMetric === null ? {} : { [`best_${key}`]: p.bestMetric };
    this.deps.log.info({ epoch: p.epoch, ...formatStats('valid_', { ...stats, ...best, num_updates: p.numUpdates }) }, `epoch ${p.epoch} | valid on '${this.opts.validSubset}' subset`);
  }

  // ---- the loop ------------------------------------------------------------------------------

  /** Why training stops after this update ('' = it goes on): fairseq's checks, in its order. */
  private stopAfterUpdate(lr: number, maxUpdate: number, stopSeconds: number): string {
    const o = this.opts;
    const p = this.progress;
    if (p.numUpdates >= maxUpdate) return `reached --max-update ${o.maxUpdate}`;
    if (this.trainWallSeconds() >= stopSeconds) return `reached --stop-time-hours ${o.stopTimeHours}`;
    if (lr < o.minLr && p.numUpdates > o.warmupUpdates) return `learning rate ${lr} fell below --min-lr ${o.minLr}`;
    return this.patienceExhausted();
  }

  private patienceExhausted(): string {
    const o = this.opts;
    return o.patience > 0 && this.progress.sinceBest >= o.patience ? `no improvement of ${o.bestCheckpointMetric} in the last ${o.patience} validations (--patience)` : '';
  }

  async train(): Promise<TrainSummary> {
    const o = this.opts;
    const log = this.deps.log;
    this.startTime = Date.now();
    const uf = Math.max(1, o.updateFreq);
    let stopped = '';
    const canValidate = !o.disableValidation && this.deps.valid !== undefined;
    const maxUpdate = o.maxUpdate > 0 ? o.maxUpdate : Infinity;
    const maxEpoch = o.maxEpoch > 0 ? o.maxEpoch : Infinity;
    const stopSeconds = o.stopTimeHours > 0 ? o.stopTimeHours * 3600 : Infinity;
    if (this.progress.numUpdates >= maxUpdate) stopped = `--max-update ${o.maxUpdate} already reached`;
    else if (this.progress.wallSeconds >= stopSeconds) stopped = `--stop-time-hours ${o.stopTimeHours} already reached`;
    while (!stopped && this.progress.epoch <= maxEpoch) {
      const p = this.progress;
      const epochRng = new Rng(o.seed * 1000003 + p.epoch); // batch order of this epoch, from the seed
      const order = shuffled(this.trainBatches, () => epochRng.uniform());
      const updatesInEpoch = Math.ceil(order.length / uf);
      const bar = createProgress(`epoch ${String(p.epoch).padStart(3)}`, updatesInEpoch, ' | loss {loss} | lr {lr} | wps {wps}');
      bar.update(Math.floor(p.iterationsInEpoch / uf));
      let interval = emptySums();
      let epochSums = emptySums();
      let intervalStart = Date.now();
      let intervalUpdates = 0;
      let gnormSum = 0;
      let lr = 0;
      while (p.iterationsInEpoch < order.length) {
        const group = order.slice(p.iterationsInEpoch, p.iterationsInEpoch + uf).map((idx) => this.deps.train.collate(idx));
        const r = this.step(group);
        p.iterationsInEpoch += group.length;
        lr = r.lr;
        mergeSums(interval, r.sums);
        mergeSums(epochSums, r.sums);
        gnormSum += r.gnorm;
        intervalUpdates += 1;
        const reduced = this.deps.criterion.reduce(r.sums);
        this.lastTrainLoss = reduced.loss ?? NaN;
        const secs = (Date.now() - intervalStart) / 1000;
        bar.update(Math.ceil(p.iterationsInEpoch / uf), { loss: (reduced.loss ?? 0).toFixed(3), lr: lr.toExponential(2), wps: Math.round(interval.ntokens / Math.max(secs, 1e-3)) });
        if (p.numUpdates % o.logInterval === 0 || p.iterationsInEpoch >= order.length) {
          const stats = {
            ...this.deps.criterion.reduce(interval),
            wps: interval.ntokens / Math.max(secs, 1e-3),
            ups: intervalUpdates / Math.max(secs, 1e-3),
            wpb: interval.ntokens / intervalUpdates,
            bsz: interval.nsentences / intervalUpdates,
            num_updates: p.numUpdates,
            lr,
            gnorm: gnormSum / intervalUpdates,
            train_wall: this.trainWallSeconds(),
          };
          if (p.iterationsInEpoch < order.length) {
            log.info({ epoch: p.epoch, update: Number((p.epoch - 1 + p.iterationsInEpoch / order.length).toFixed(3)), ...formatStats('', stats) }, `epoch ${p.epoch} | update ${p.numUpdates}`);
          }
          interval = emptySums();
          intervalStart = Date.now();
          intervalUpdates = 0;
          gnormSum = 0;
        }
        const atUpdateInterval = o.saveIntervalUpdates > 0 && p.numUpdates % o.saveIntervalUpdates === 0;
        const epochDone = p.iterationsInEpoch >= order.length;
        // as fairseq, a mid-epoch save validates too (so checkpoint.best_* can come from it)
        const validateNow = canValidate && ((o.validateIntervalUpdates > 0 && p.numUpdates % o.validateIntervalUpdates === 0) || (atUpdateInterval && !epochDone));
        if (validateNow) this.recordValidation(await this.validate());
        if (atUpdateInterval && !epochDone) this.save();
        stopped = this.stopAfterUpdate(lr, maxUpdate, stopSeconds);
        if (stopped) break;
      }
      bar.stop();
      if (p.iterationsInEpoch >= order.length) {
        const finished = p.epoch;
        const secs = this.trainWallSeconds();
        log.info({ epoch: finished, ...formatStats('train_', { ...this.deps.criterion.reduce(epochSums), num_updates: p.numUpdates, lr, wall: secs }) }, `end of epoch ${finished}`);
        if (canValidate && finished % o.validateInterval === 0) this.recordValidation(await this.validate());
        if (!stopped) stopped = this.patienceExhausted();
        if (!stopped && finished >= maxEpoch) stopped = `reached --max-epoch ${o.maxEpoch}`;
        // saved progress points at the start of the next epoch, so resuming does not redo this one
        p.epoch = finished + 1;
        p.iterationsInEpoch = 0;
        if (finished % o.saveInterval === 0 || stopped) this.save(finished);
      } else if (stopped) {
        this.save();
      }
      epochSums = emptySums();
    }
    log.info({ numUpdates: this.progress.numUpdates, epoch: this.progress.epoch, reason: stopped }, `done training: ${stopped}`);
    return { numUpdates: this.progress.numUpdates, epoch: this.progress.epoch, lastTrainLoss: this.lastTrainLoss, bestMetric: this.progress.bestMetric, stoppedBecause: stopped };
  }
}

