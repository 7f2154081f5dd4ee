/**
 * Batched beam search for autoregressive models (fairseq's SequenceGenerator, v0.10.2):
 * every step decodes all live beams of all sentences in one call, takes the top 2k candidates
 * per sentence over beam x vocabulary, finalizes candidates that end in EOS among the first k
 * (score normalized by length^lenpen), and keeps the k best others. A sentence is done once it
 * has k finished hypotheses; done sentences leave the batch. Max length is
 * min(a*srclen + b, max positions - 1); EOS is forced there. With --no-repeat-ngram-size n, a
 * token that would complete an n-gram the hypothesis already holds gets -inf (fairseq's
 * NGramRepeatBlock). Scores are natural-log (callers print base 2). Tensor work is batched; only
 * the k*2 candidates per sentence are read back.
 */
import * as tf from '@tensorflow/tfjs';
import type { GenerationOptions } from './generator.js';

/** What beam search needs of a model (the AR Transformer implements it). */
export interface IncrementalModel<E, S> {
  encode(srcTokens: tf.Tensor2D, training: boolean): E;
  initDecoderState(encOut: E): S;
  decodeStep(state: S, tokens: tf.Tensor2D): { logProbs: tf.Tensor2D; state: S };
  reorderState(state: S, indices: tf.Tensor1D): S;
}

/** fairseq's generation flags (src/generate/generator.ts declares them) plus the model's limit. */
export interface BeamSearchOptions extends GenerationOptions {
  /** Max decoder positions of the model (a hypothesis never exceeds maxPositions - 1 tokens). */
  maxPositions: number;
}

export interface Hypothesis {
  /** Token ids including the final EOS. */
  tokens: Int32Array;
  /** Length-normalized score (natural log). */
  score: number;
  /** Per-token log-probabilities (natural log), one per token. */
  positionalScores: Float32Array;
  /** Iterative decoders: the 0-based refinement step at which it was final (fairseq's I- lines). */
  steps?: number;
}

export interface SpecialIds {
  pad: number;
  eos: number;
  unk: number;
  bos: number;
}

interface Finished {
  hypos: Hypothesis[];
}

/**
 * Beam search over a batch. srcTokens [B, S] int32 (right-padded), srcLengths per sentence.
 * Returns, per sentence, its nbest hypotheses best first.
 */
export function beamSearch<E, S>(
  model: IncrementalModel<E, S>,
  encodeExpanded: (encOut: E, indices: tf.Tensor1D) => E,
  disposeEnc: (e: E) => void,
  disposeState: (s: S) => void,
  srcTokens: tf.Tensor2D,
  srcLengths: Int32Array,
  ids: SpecialIds,
  vocabSize: number,
  opts: BeamSearchOptions,
): Hypothesis[][] {
  const bsz = srcTokens.shape[0];
  const k = opts.beam;
  const maxLens = Array.from(srcLengths, (l) => Math.max(1, Math.min(Math.floor(opts.maxLenA * l + opts.maxLenB), opts.maxPositions - 1)));
  const finished: Finished[] = Array.from({ length: bsz }, () => ({ hypos: [] }));

  // expand encoder output to bsz*k rows: sentence-major, beam-minor
  const enc = model.encode(srcTokens, false);
  const expandIdx = tf.tensor1d(Array.from({ length: bsz * k }, (_, i) => Math.floor(i / k)), 'int32');
  const encK = encodeExpanded(enc, expandIdx);
  expandIdx.dispose();
  disposeEnc(enc);
  let state = model.initDecoderState(encK);
  disposeEnc(encK);

  // live rows: for each active sentence, k beams; JS bookkeeping of tokens and scores
  let active = Array.from({ length: bsz }, (_, i) => i); // sentence ids of the live batch rows / k
  let tokens: number[][] = Array.from({ length: bsz * k }, () => []); // generated tokens per row (no leading EOS)
  let posScores: number[][] = Array.from({ length: bsz * k }, () => []);
  let cum = new Float32Array(bsz * k); // cumulative log-prob per row
  const maxLenAll = Math.max(...maxLens);

  for (let step = 0; step <= maxLenAll && active.length > 0; step++) {
    const nRows = active.length * k;
    const last = tokens.map((t) => (t.length === 0 ? ids.eos : t[t.length - 1]!));
    const inp = tf.tensor2d(Int32Array.from(last), [nRows, 1], 'int32');
    const { logProbs, state: next } = model.decodeStep(state, inp);
    inp.dispose();
    state = next;
    const forceEos = active.map((s) => step >= maxLens[s]!);
    const { values, indices } = tf.tidy(() => {
      let lp: tf.Tensor2D = logProbs;
      // constraints as additive masks over the vocabulary (batched, no JS loops over V)
      const mask = new Float32Array(vocabSize);
      mask[ids.pad] = -Infinity;
      if (step < opts.minLen) mask[ids.eos] = -Infinity;
      if (opts.unkpen !== 0) mask[ids.unk] = -opts.unkpen;
      lp = tf.add(lp, tf.tensor1d(mask)) as tf.Tensor2D;
      const banned = opts.noRepeatNgramSize > 0 ? repeatedNgramBans(tokens, opts.noRepeatNgramSize, vocabSize) : undefined;
      if (banned) lp = tf.add(lp, tf.tensor2d(banned, [nRows, vocabSize])) as tf.Tensor2D;
      // rows whose sentence hit its max length may only produce EOS
      if (forceEos.some((f) => f)) {
        // -1e9 rather than -inf so that 0 * penalty stays 0 for the other rows
        const eosOnly = new Float32Array(vocabSize).fill(-1e9);
        eosOnly[ids.eos] = 0;
        const rowForce = tf.tensor2d(Float32Array.from({ length: nRows }, (_, r) => (forceEos[Math.floor(r / k)] ? 1 : 0)), [nRows, 1]);
        lp = tf.add(lp, tf.mul(rowForce, tf.tensor2d(eosOnly, [1, vocabSize]))) as tf.Tensor2D;
      }
      // cumulative scores; at step 0 only the first beam of each sentence is live
      const prev = Float32Array.from(cum.subarray(0, nRows));
      if (step === 0) for (let r = 0; r < nRows; r++) if (r % k !== 0) prev[r] = -Infinity;
      const cand = tf.add(lp, tf.tensor2d(prev, [nRows, 1])).reshape([active.length, k * vocabSize]);
      const top = tf.topk(cand, Math.min(2 * k, k * vocabSize));
      return { values: top.values.dataSync() as Float32Array, indices: top.indices.dataSync() as Int32Array };
    });
    // per-token scores of the candidates need this step's log-probs; read only the chosen ones
    const lpFlat = logProbs;
    const nCand = values.length / active.length;
    const chosenRows: number[] = [];
    const newTokens: number[][] = [];
    const newPos: number[][] = [];
    const newCum: number[] = [];
    const keepSentences: number[] = [];
    const rowTok: { row: number; tok: number }[] = [];
    for (let a = 0; a < active.length; a++) for (let c = 0; c < nCand; c++) {
      const flat = indices[a * nCand + c]!;
      rowTok.push({ row: a * k + Math.floor(flat / vocabSize), tok: flat % vocabSize });
    }
    const stepLp = gatherPairs(lpFlat, rowTok);
    lpFlat.dispose();
    for (let a = 0; a < active.length; a++) {
      const sent = active[a]!;
      const fin = finished[sent]!;
      const keepRows: number[] = [];
      for (let c = 0; c < nCand && keepRows.length < k; c++) {
        const score = values[a * nCand + c]!;
        if (score === -Infinity) continue;
        const { row, tok } = rowTok[a * nCand + c]!;
        const toks = [...tokens[row]!, tok];
        const pos = [...posScores[row]!, stepLp[a * nCand + c]!];
        if (tok === ids.eos || step >= maxLens[sent]!) {
          // finalize only candidates among the first k, as fairseq
          if (c < k && fin.hypos.length < k) {
            if (tok !== ids.eos) {
              toks.push(ids.eos);
              pos.push(0);
            }
            fin.hypos.push({ tokens: Int32Array.from(toks), score: score / toks.length ** opts.lenpen, positionalScores: Float32Array.from(pos) });
          }
          continue;
        }
        keepRows.push(row);
        newTokens.push(toks);
        newPos.push(pos);
        newCum.push(score);
      }
      if (fin.hypos.length < k && keepRows.length > 0) {
        // pad to k rows by repeating the last kept one with -inf score (keeps shapes fixed)
        while (keepRows.length < k) {
          keepRows.push(keepRows[keepRows.length - 1]!);
          newTokens.push([...newTokens[newTokens.length - 1]!]);
          newPos.push([...newPos[newPos.length - 1]!]);
          newCum.push(-Infinity);
        }
        keepSentences.push(sent);
        chosenRows.push(...keepRows);
      } else {
        // this sentence is done: drop the rows gathered for it
        newTokens.splice(newTokens.length - keepRows.length, keepRows.length);
        newPos.splice(newPos.length - keepRows.length, keepRows.length);
        newCum.splice(newCum.length - keepRows.length, keepRows.length);
      }
    }
    active = keepSentences;
    tokens = newTokens;
    posScores = newPos;
    cum = Float32Array.from(newCum);
    if (active.length === 0) break;
    const idx = tf.tensor1d(Int32Array.from(chosenRows), 'int32');
    state = model.reorderState(state, idx);
    idx.dispose();
  }
  disposeState(state);
  return finished.map((f) => f.hypos.sort((x, y) => y.score - x.score).slice(0, opts.nbest));
}

/** Reads lp[row, tok] for each pair with one gather on the device. */
function gatherPairs(lp: tf.Tensor2D, pairs: { row: number; tok: number }[]): Float32Array {
  if (pairs.length === 0) return new Float32Array(0);
  const v = lp.shape[1];
  return tf.tidy(() => tf.gather(lp.reshape([-1]), tf.tensor1d(Int32Array.from(pairs, (p) => p.row * v + p.tok), 'int32')).dataSync() as Float32Array);
}

/**
 * -inf at (row, token) where `token` would repeat an n-gram of that row's hypothesis: the tokens
 * that followed each earlier occurrence of its last n - 1 tokens. Undefined when nothing is banned.
 */
export function repeatedNgramBans(rows: number[][], n: number, vocabSize: number): Float32Array | undefined {
  let out: Float32Array | undefined;
  rows.forEach((t, r) => {
    const len = t.length;
    for (let i = 0; i + n <= len; i++) {
      let match = true;
      for (let j = 0; j < n - 1 && match; j++) match = t[i + j] === t[len - n + 1 + j];
      if (!match) continue;
      out ??= new Float32Array(rows.length * vocabSize);
      out[r * vocabSize + t[i + n - 1]!] = -Infinity;
    }
  });
  return out;
}
