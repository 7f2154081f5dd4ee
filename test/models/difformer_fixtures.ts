/**
 * Shared by the Difformer tests: a handful of real sentence pairs from test/fixtures/gettext with
 * a joined whitespace dictionary, batches in translation_lev layout (BOS ... EOS on both sides),
 * and a plain Adam loop over the difformer criterion.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES } from '../helpers.js';
import { Dictionary, tokenize } from '../../src/data/dictionary.js';
import type { Batch } from '../../src/data/language_pair_dataset.js';
import { DifformerModel, resolveDifformerOptions, type DifformerOptions } from '../../models/difformer.js';
import { DifformerCriterion, type DifformerCriterionOptions } from '../../criterions/difformer.js';

export interface Pairs {
  src: string[];
  tgt: string[];
}

/**
 * The first `n` gettext pairs with at most `maxTokens` words on each side, or, with `keep`,
 * the first `n` that `keep` accepts (given the word lists and the pairs taken so far).
 */
export function gettextPairs(n: number, maxTokens: number, keep?: (src: string[], tgt: string[], taken: Pairs) => boolean): Pairs {
  const read = (f: string) => readFileSync(join(FIXTURES, 'gettext', f), 'utf8').split('\n');
  const de = read('train.de');
  const en = read('train.en');
  const out: Pairs = { src: [], tgt: [] };
  for (let i = 0; i < de.length && out.src.length < n; i++) {
    const s = tokenize(de[i] ?? '');
    const t = tokenize(en[i] ?? '');
    if (s.length === 0 || t.length === 0 || s.length > maxTokens || t.length > maxTokens) continue;
    if (keep && !keep(s, t, out)) continue;
    out.src.push(s.join(' '));
    out.tgt.push(t.join(' '));
  }
  return out;
}

/** `n` gettext pairs whose targets all have exactly `tgtTokens` words (distinct targets): length says nothing. */
export function gettextPairsOfTargetLength(n: number, tgtTokens: number, maxSrcTokens: number): Pairs {
  return gettextPairs(n, Math.max(tgtTokens, maxSrcTokens), (s, t, taken) => s.length <= maxSrcTokens && t.length === tgtTokens && !taken.tgt.includes(t.join(' ')));
}

/** A joined dictionary over both sides (fairseq --joined-dictionary, padded to a multiple of 8). */
export function joinedDictionary(p: Pairs): Dictionary {
  const d = new Dictionary();
  for (const line of [...p.src, ...p.tgt]) d.addLine(line);
  d.finalize();
  return d;
}

/** translation_lev batch: [BOS, words, EOS] on both sides, right-padded (optionally wider). */
export function makeBatch(dict: Dictionary, p: Pairs, extraPad = 0): Batch {
  const enc = (line: string) => Int32Array.from([dict.bosIndex, ...dict.encodeLine(line)]);
  const src = p.src.map(enc);
  const tgt = p.tgt.map(enc);
  const bsz = src.length;
  const srcLen = Math.max(...src.map((s) => s.length)) + extraPad;
  const tgtLen = Math.max(...tgt.map((s) => s.length)) + extraPad;
  const srcTokens = new Int32Array(bsz * srcLen).fill(dict.padIndex);
  const target = new Int32Array(bsz * tgtLen).fill(dict.padIndex);
  const prev = new Int32Array(bsz * tgtLen).fill(dict.padIndex);
  src.forEach((s, i) => srcTokens.set(s, i * srcLen));
  tgt.forEach((t, i) => {
    target.set(t, i * tgtLen);
    prev[i * tgtLen] = dict.eosIndex;
    prev.set(t.subarray(0, t.length - 1), i * tgtLen + 1);
  });
  return {
    ids: Int32Array.from({ length: bsz }, (_, i) => i),
    bsz,
    srcTokens,
    srcLen,
    srcLengths: Int32Array.from(src, (s) => s.length),
    target,
    prevOutputTokens: prev,
    tgtLen,
    tgtLengths: Int32Array.from(tgt, (t) => t.length),
    ntokens: tgt.reduce((a, t) => a + t.length, 0),
  };
}

export function tinyModel(dict: Dictionary, overrides: Partial<DifformerOptions> = {}, seed = 1): DifformerModel {
  return new DifformerModel(resolveDifformerOptions('difformer_tiny', overrides), { src: dict, tgt: dict }, seed);
}

/** `steps` Adam updates on one batch; returns the loss of every step. */
export function trainSteps(model: DifformerModel, batch: Batch, crit: DifformerCriterionOptions, steps: number, lr = 3e-3): number[] {
  const criterion = new DifformerCriterion(crit);
  const opt = tf.train.adam(lr, 0.9, 0.98, 1e-8);
  const vars = model.params.trainableVariables();
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { value, grads } = tf.variableGrads(() => criterion.forward(model, batch, true).loss, vars);
    opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    losses.push(value.dataSync()[0]!);
    tf.dispose([value, ...Object.values(grads)]);
  }
  opt.dispose();
  return losses;
}

/** Target rows of a batch as token arrays without BOS (what a hypothesis should equal, EOS last). */
export function referenceTokens(batch: Batch, dict: Dictionary): Int32Array[] {
  const out: Int32Array[] = [];
  for (let i = 0; i < batch.bsz; i++) {
    const row = batch.target.subarray(i * batch.tgtLen, (i + 1) * batch.tgtLen);
    out.push(Int32Array.from(row.filter((t) => t !== dict.padIndex).slice(1)));
  }
  return out;
}
