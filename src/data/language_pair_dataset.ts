/**
 * Parallel data from a data-bin and batching by --max-tokens, as fairseq's LanguagePairDataset
 * and batch_by_size: sentences sorted by length; a batch's cost is (its longest source or
 * target) x (number of sentences) and stays <= max tokens; sizes are multiples of
 * --required-batch-size-multiple where possible; batches are shuffled per epoch with the seed.
 * Collation yields plain typed arrays; trainers and generators turn them into tensors.
 */
import { Dictionary } from './dictionary.js';
import { DifformerError } from '../errors.js';
import type { TokenDataset } from './indexed_dataset.js';

export interface Batch {
  /** Sentence ids (line numbers in the split). */
  ids: Int32Array;
  bsz: number;
  /** [bsz, srcLen] row-major, right-padded with pad (EOS-terminated; BOS prepended if asked). */
  srcTokens: Int32Array;
  srcLen: number;
  srcLengths: Int32Array;
  /** [bsz, tgtLen] target = y1..yn EOS, right-padded. */
  target: Int32Array;
  /** [bsz, tgtLen] prev_output_tokens = EOS y1..yn (teacher forcing input of an AR decoder). */
  prevOutputTokens: Int32Array;
  tgtLen: number;
  tgtLengths: Int32Array;
  /** Non-pad target tokens. */
  ntokens: number;
}

/** Rows [start, end) of a batch (same padded widths). */
export function sliceBatch(batch: Batch, start: number, end: number): Batch {
  const rows = <T extends Int32Array>(a: T, width: number): T => a.slice(start * width, end * width) as T;
  const tgtLengths = batch.tgtLengths.slice(start, end);
  return {
    ids: batch.ids.slice(start, end),
    bsz: end - start,
    srcTokens: rows(batch.srcTokens, batch.srcLen),
    srcLen: batch.srcLen,
    srcLengths: batch.srcLengths.slice(start, end),
    target: rows(batch.target, batch.tgtLen),
    prevOutputTokens: rows(batch.prevOutputTokens, batch.tgtLen),
    tgtLen: batch.tgtLen,
    tgtLengths,
    ntokens: tgtLengths.reduce((a, v) => a + v, 0),
  };
}

export interface BatchingOptions {
  maxTokens: number | undefined;
  batchSize: number | undefined;
  requiredBatchSizeMultiple: number;
  maxSourcePositions: number;
  maxTargetPositions: number;
}

export interface LanguagePairOptions {
  prependBos?: boolean;
  /** fairseq's --truncate-source: cut sources to this many tokens instead of skipping them. */
  truncateSourceTo?: number;
}

export class LanguagePairDataset {
  constructor(
    readonly src: TokenDataset,
    readonly tgt: TokenDataset | undefined,
    readonly srcDict: Dictionary,
    readonly tgtDict: Dictionary,
    opts: LanguagePairOptions = {},
  ) {
    this.prependBos = opts.prependBos ?? false;
    this.truncateSourceTo = opts.truncateSourceTo;
    if (this.truncateSourceTo !== undefined && this.truncateSourceTo < 2 + (this.prependBos ? 1 : 0)) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', `cannot truncate sources to ${this.truncateSourceTo} tokens (--max-source-positions too small)`);
    }
  }

  /** Prepend BOS to source and target, as fairseq's translation_lev (NAT models, Difformer). */
  readonly prependBos: boolean;
  /** Longest source kept (BOS and EOS included); longer ones lose their tail, EOS kept. */
  readonly truncateSourceTo: number | undefined;

  get length(): number {
    return this.src.length;
  }

  srcSize(i: number): number {
    const n = this.src.sizes[i]! + (this.prependBos ? 1 : 0);
    return this.truncateSourceTo === undefined ? n : Math.min(n, this.truncateSourceTo);
  }

  tgtSize(i: number): number {
    return this.tgt ? this.tgt.sizes[i]! + (this.prependBos ? 1 : 0) : 0;
  }

  /** What pair i costs in a --max-tokens batch: its longer side, BOS/EOS included. */
  sampleTokens(i: number): number {
    return Math.max(this.srcSize(i), this.tgtSize(i));
  }

  /**
   * Indices whose sizes fit the limits; blank lines (EOS only) are skipped for training.
   * A pair longer than --max-tokens fits no batch: it is skipped and counted apart (fairseq
   * stops with an assertion there), so callers can say which limit to raise.
   */
  validIndices(opts: BatchingOptions, skipEmpty: boolean): { kept: number[]; skipped: number; overMaxTokens: number } {
    const kept: number[] = [];
    const maxTokens = opts.maxTokens ?? Infinity;
    let skipped = 0;
    let overMaxTokens = 0;
    for (let i = 0; i < this.length; i++) {
      const s = this.srcSize(i);
      const t = this.tgtSize(i);
      const empty = this.src.sizes[i]! <= 1 || (this.tgt !== undefined && this.tgt.sizes[i]! <= 1);
      if (s > opts.maxSourcePositions || t > opts.maxTargetPositions || (skipEmpty && empty)) skipped++;
      else if (this.sampleTokens(i) > maxTokens) {
        skipped++;
        overMaxTokens++;
      } else kept.push(i);
    }
    return { kept, skipped, overMaxTokens };
  }

  /**
   * Groups indices into batches (fairseq's batch_by_size over length-sorted indices).
   * Sorting is by target then source length, ties by index, so batching is deterministic.
   */
  batches(indices: number[], opts: BatchingOptions): number[][] {
    const order = [...indices].sort((a, b) => this.tgtSize(a) - this.tgtSize(b) || this.srcSize(a) - this.srcSize(b) || a - b);
    const maxTokens = opts.maxTokens ?? Infinity;
    const maxSentences = opts.batchSize ?? Infinity;
    const mult = Math.max(1, opts.requiredBatchSizeMultiple);
    const out: number[][] = [];
    let cur: number[] = [];
    let curMax = 0;
    for (const i of order) {
      const len = this.sampleTokens(i);
      const newMax = Math.max(curMax, len);
      // callers filter first (validIndices, generate's and distill's checks); never drop unseen
      if (len > maxTokens) throw new DifformerError('DIFFORMER_BAD_OPTION', `sentence ${i} has ${len} tokens (source or target, BOS/EOS included), more than --max-tokens ${maxTokens}`);
      const wouldBe = cur.length + 1;
      if (cur.length > 0 && (wouldBe > maxSentences || newMax * wouldBe > maxTokens)) {
        // keep a multiple of `mult` where possible, carrying the remainder over
        const keep = cur.length >= mult ? cur.length - (cur.length % mult) : cur.length;
        out.push(cur.slice(0, keep));
        cur = cur.slice(keep);
        curMax = cur.reduce((m, j) => Math.max(m, this.sampleTokens(j)), 0);
      }
      cur.push(i);
      curMax = Math.max(curMax, len);
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  /** Batches for decoding (sizes already checked): without --max-tokens, `defaultSentences` each. */
  decodingBatches(indices: number[], maxTokens: number | undefined, batchSize: number | undefined, defaultSentences: number): number[][] {
    const limits = { maxTokens, batchSize: batchSize ?? (maxTokens ? undefined : defaultSentences), requiredBatchSizeMultiple: 1 };
    return this.batches(indices, { ...limits, maxSourcePositions: Infinity, maxTargetPositions: Infinity });
  }

  /** Source tokens of sentence i (EOS-terminated), cut to --max-source-positions under --truncate-source. */
  private source(i: number): Int32Array {
    const s = this.src.get(i);
    if (this.truncateSourceTo === undefined) return s;
    const keep = this.truncateSourceTo - (this.prependBos ? 1 : 0);
    if (s.length <= keep) return s;
    const cut = s.slice(0, keep);
    cut[keep - 1] = s[s.length - 1]!; // fairseq strips EOS, truncates, appends EOS again
    return cut;
  }

  collate(indices: number[]): Batch {
    const bsz = indices.length;
    const pad = this.srcDict.padIndex;
    const bosSrc = this.srcDict.bosIndex;
    const srcSeqs = indices.map((i) => this.source(i));
    const tgtSeqs = this.tgt ? indices.map((i) => this.tgt!.get(i)) : [];
    const extra = this.prependBos ? 1 : 0;
    const srcLen = Math.max(1, ...srcSeqs.map((s) => s.length + extra));
    const tgtLen = this.tgt ? Math.max(1, ...tgtSeqs.map((s) => s.length + extra)) : 0;
    const srcTokens = new Int32Array(bsz * srcLen).fill(pad);
    const srcLengths = new Int32Array(bsz);
    const target = new Int32Array(bsz * tgtLen).fill(this.tgtDict.padIndex);
    const prev = new Int32Array(bsz * tgtLen).fill(this.tgtDict.padIndex);
    const tgtLengths = new Int32Array(bsz);
    let ntokens = 0;
    for (let b = 0; b < bsz; b++) {
      const s = srcSeqs[b]!;
      if (this.prependBos) srcTokens[b * srcLen] = bosSrc;
      srcTokens.set(s, b * srcLen + extra);
      srcLengths[b] = s.length + extra;
      if (this.tgt) {
        const t = tgtSeqs[b]!;
        if (this.prependBos) target[b * tgtLen] = this.tgtDict.bosIndex;
        target.set(t, b * tgtLen + extra);
        tgtLengths[b] = t.length + extra;
        ntokens += t.length + extra;
        // prev_output_tokens: EOS moved to the front (fairseq's move_eos_to_beginning)
        prev[b * tgtLen] = this.tgtDict.eosIndex;
        const row = target.subarray(b * tgtLen, b * tgtLen + tgtLengths[b]! - 1);
        prev.set(row, b * tgtLen + 1);
      }
    }
    return { ids: Int32Array.from(indices), bsz, srcTokens, srcLen, srcLengths, target, prevOutputTokens: prev, tgtLen, tgtLengths, ntokens };
  }
}

/** Fisher-Yates shuffle with a seeded generator (the same seed gives the same epoch order). */
export function shuffled<T>(items: T[], rand: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
