/**
 * Checkpoints: one self-describing safetensors file each, holding the model weights
 * (`model.<name>`), Adam state (`optimizer.exp_avg.<name>`, `optimizer.exp_avg_sq.<name>`) and
 * metadata: the resolved config (task, model, criterion, training options), the dictionaries
 * (size, hash and the symbols themselves), progress counters and the RNG state. Written
 * atomically. File names follow fairseq: checkpoint_last, checkpoint_best, checkpoint<epoch>,
 * checkpoint_<epoch>_<updates>, checkpoint.best_<metric>_<value>.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Dictionary } from '../data/dictionary.js';
import { DifformerError } from '../errors.js';
import type { ParamStore, RngState } from '../nn/params.js';
import { Adam } from './optimizer.js';
import { readSafetensors, writeSafetensors, type NamedArray } from './safetensors.js';

export const CHECKPOINT_EXT = '.safetensors';

export interface CheckpointConfig {
  task: { name: string; options: object };
  model: { name: string; arch: string; options: object };
  criterion: { name: string; options: object };
  training: object;
}

export interface TrainProgress {
  epoch: number;
  /** Batches of `epoch` already consumed (for mid-epoch resume). */
  iterationsInEpoch: number;
  numUpdates: number;
  bestMetric: number | null;
  /** Validations since the best one (for --patience). */
  sinceBest: number;
  wallSeconds: number;
}

export interface CheckpointMeta {
  format: 'difformer-checkpoint';
  version: 1;
  config: CheckpointConfig;
  dictionaries: { src: DictionaryInfo; tgt: DictionaryInfo };
  progress: TrainProgress;
  rng: RngState;
  optimizerStep: number;
  /** Validation metrics at save time, e.g. { loss: 3.2, bleu: 21.4 }. */
  metrics: Record<string, number>;
}

export interface DictionaryInfo {
  size: number;
  hash: string;
  symbols: string[];
}

export function dictionaryInfo(d: Dictionary): DictionaryInfo {
  return { size: d.size, hash: d.hash(), symbols: [...d.symbols] };
}

function toNamed(t: tf.Tensor): NamedArray {
  return { dtype: 'F32', shape: [...t.shape], data: t.dataSync() as Float32Array };
}

/** Writes a checkpoint atomically. */
export function saveCheckpoint(path: string, params: ParamStore, optimizer: Adam | undefined, meta: Omit<CheckpointMeta, 'format' | 'version'>): void {
  const tensors = new Map<string, NamedArray>();
  for (const [name, v] of Object.entries(params.toRecord())) tensors.set(`model.${name}`, toNamed(v));
  if (optimizer) {
    for (const [name, v] of optimizer.expAvg) tensors.set(`optimizer.exp_avg.${name}`, toNamed(v));
    for (const [name, v] of optimizer.expAvgSq) tensors.set(`optimizer.exp_avg_sq.${name}`, toNamed(v));
  }
  const full: CheckpointMeta = { format: 'difformer-checkpoint', version: 1, ...meta };
  writeSafetensors(path, tensors, { difformer: JSON.stringify(full) });
}

export interface LoadedCheckpoint {
  path: string;
  meta: CheckpointMeta;
  weights: Map<string, NamedArray>;
  optimizer: { expAvg: Map<string, NamedArray>; expAvgSq: Map<string, NamedArray> };
}

export function loadCheckpoint(path: string): LoadedCheckpoint {
  if (!existsSync(path)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `checkpoint not found: ${path}`);
  const { tensors, metadata } = readSafetensors(path);
  if (!metadata.difformer) throw new DifformerError('DIFFORMER_BAD_CHECKPOINT', `${path} has no difformer metadata (not written by difformer-train?)`);
  const meta = JSON.parse(metadata.difformer) as CheckpointMeta;
  const weights = new Map<string, NamedArray>();
  const expAvg = new Map<string, NamedArray>();
  const expAvgSq = new Map<string, NamedArray>();
  for (const [k, v] of tensors) {
    if (k.startsWith('model.')) weights.set(k.slice(6), v);
    else if (k.startsWith('optimizer.exp_avg_sq.')) expAvgSq.set(k.slice('optimizer.exp_avg_sq.'.length), v);
    else if (k.startsWith('optimizer.exp_avg.')) expAvg.set(k.slice('optimizer.exp_avg.'.length), v);
  }
  return { path, meta, weights, optimizer: { expAvg, expAvgSq } };
}

/** Fails naming both sizes when a checkpoint was trained with other dictionaries. */
export function checkDictionaries(ckpt: LoadedCheckpoint, src: Dictionary, tgt: Dictionary): void {
  for (const [side, d] of [
    ['source', src],
    ['target', tgt],
  ] as const) {
    const info = side === 'source' ? ckpt.meta.dictionaries.src : ckpt.meta.dictionaries.tgt;
    if (info.size !== d.size || info.hash !== d.hash()) {
      throw new DifformerError(
        'DIFFORMER_DICTIONARY_MISMATCH',
        `${ckpt.path} was trained with a ${side} dictionary of ${info.size} types, but the data has ${d.size} types${
          info.size === d.size ? ' (same size, different symbols)' : ''
        }; use the data-bin the model was trained on`,
      );
    }
  }
}

/** Rebuilds the dictionaries stored in a checkpoint (for generation without the data-bin). */
export function checkpointDictionary(info: DictionaryInfo): Dictionary {
  const d = new Dictionary();
  for (let i = d.nspecial; i < info.symbols.length; i++) d.addSymbol(info.symbols[i]!, 0, true);
  return d;
}

/** Copies weights into a model's parameters (shape and name checks by the store). */
export function loadWeights(params: ParamStore, weights: Map<string, NamedArray>): void {
  const record: Record<string, tf.Tensor> = {};
  for (const [k, v] of weights) record[k] = tf.tensor(v.data, v.shape, 'float32');
  try {
    params.assign(record);
  } finally {
    for (const t of Object.values(record)) t.dispose();
  }
}

/** Restores Adam's state; parameters without state start fresh. */
export function loadOptimizerState(opt: Adam, ckpt: LoadedCheckpoint, params: ParamStore): void {
  opt.dispose();
  opt.step = ckpt.meta.optimizerStep;
  for (const [name, v] of Object.entries(params.toRecord())) {
    const m = ckpt.optimizer.expAvg.get(name);
    const s = ckpt.optimizer.expAvgSq.get(name);
    if (!m || !s) continue;
    if (m.data.length !== v.size) throw new DifformerError('DIFFORMER_BAD_CHECKPOINT', `optimizer state for ${name} has the wrong size`);
    opt.expAvg.set(name, tf.variable(tf.tensor(m.data, v.shape, 'float32'), false));
    opt.expAvgSq.set(name, tf.variable(tf.tensor(s.data, v.shape, 'float32'), false));
  }
}

/** Checkpoint names and pruning, as fairseq's checkpoint_utils. */
export const checkpointNames = {
  last: () => `checkpoint_last${CHECKPOINT_EXT}`,
  best: () => `checkpoint_best${CHECKPOINT_EXT}`,
  epoch: (epoch: number) => `checkpoint${epoch}${CHECKPOINT_EXT}`,
  updates: (epoch: number, updates: number) => `checkpoint_${epoch}_${updates}${CHECKPOINT_EXT}`,
  bestOf: (metric: string, value: number) => `checkpoint.best_${metric}_${value.toFixed(2)}${CHECKPOINT_EXT}`,
};

/** Removes all but the newest `keep` files matching a pattern whose first group is the sort key. */
export function pruneCheckpoints(dir: string, pattern: RegExp, keep: number, newestFirst: (a: number, b: number) => number): string[] {
  if (keep < 0 || !existsSync(dir)) return [];
  const found = readdirSync(dir)
    .map((f) => ({ f, m: pattern.exec(f) }))
    .filter((x): x is { f: string; m: RegExpExecArray } => x.m !== null)
    .map(({ f, m }) => ({ f, key: Number(m[1]) }))
    .sort((a, b) => newestFirst(a.key, b.key));
  const removed = found.slice(keep).map((x) => x.f);
  for (const f of removed) rmSync(join(dir, f), { force: true });
  return removed;
}
