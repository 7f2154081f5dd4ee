/**
 * Synthetic but realistically shaped data for bench/speed.ts: a joined dictionary of V types and
 * a corpus of sentence pairs whose lengths scatter around 20 tokens (IWSLT'14 de-en's median
 * is ~20 BPE tokens), batched exactly as training batches them (fairseq's batch_by_size with
 * --max-tokens and --required-batch-size-multiple 8). Token ids follow a Zipf law so the
 * embedding gradient touches a realistic set of rows. Everything is seeded, and the chosen
 * batches are written to JSON so the PyTorch side trains on the very same tensors.
 */
import { Dictionary } from '../src/data/dictionary.js';
import { InMemoryDataset } from '../src/data/indexed_dataset.js';
import { LanguagePairDataset, type Batch } from '../src/data/language_pair_dataset.js';

/** Small deterministic PRNG (mulberry32). */
export function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A dictionary of exactly `size` types (4 specials + w4..). */
export function benchDictionary(size: number): Dictionary {
  const d = new Dictionary();
  for (let i = d.size; i < size; i++) d.addSymbol(`w${i}`);
  return d;
}

export interface BenchCorpus {
  dict: Dictionary;
  dataset: LanguagePairDataset;
}

/**
 * n sentence pairs: source length ~ N(20, 6) clipped to [3, 60] (plus EOS), target length
 * source +- N(0, 2). Ids Zipf(1.0) over the non-special types.
 */
export function benchCorpus(vocab: number, n: number, seed: number, prependBos: boolean): BenchCorpus {
  const dict = benchDictionary(vocab);
  const rand = mulberry(seed);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  // Zipf sampling by inverting the cumulative weights.
  const types = vocab - dict.nspecial;
  const cum = new Float64Array(types);
  let acc = 0;
  for (let i = 0; i < types; i++) cum[i] = acc += 1 / (i + 1);
  const draw = (): number => {
    const u = rand() * acc;
    let lo = 0;
    let hi = types - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return dict.nspecial + lo;
  };
  const sentence = (len: number): Int32Array => {
    const s = new Int32Array(len + 1);
    for (let i = 0; i < len; i++) s[i] = draw();
    s[len] = dict.eosIndex;
    return s;
  };
  const src: Int32Array[] = [];
  const tgt: Int32Array[] = [];
  for (let i = 0; i < n; i++) {
    const ls = Math.min(60, Math.max(3, Math.round(20 + 6 * normal())));
    const lt = Math.min(60, Math.max(3, Math.round(ls + 2 * normal())));
    src.push(sentence(ls));
    tgt.push(sentence(lt));
  }
  return { dict, dataset: new LanguagePairDataset(new InMemoryDataset(src), new InMemoryDataset(tgt), dict, dict, { prependBos }) };
}

/**
 * Training batches of at most maxTokens (padded) tokens, as the trainer forms them; returns the
 * `count` batches whose longest sentence is closest to `aroundLen` (so every run, ours and
 * PyTorch's, sees the same realistic ~4k-token shapes).
 */
export function trainBatches(c: BenchCorpus, maxTokens: number, count: number, aroundLen: number): Batch[] {
  const opts = { maxTokens, batchSize: undefined, requiredBatchSizeMultiple: 8, maxSourcePositions: 1024, maxTargetPositions: 1024 };
  const { kept } = c.dataset.validIndices(opts, true);
  const groups = c.dataset.batches(kept, opts).map((idx) => c.dataset.collate(idx));
  groups.sort((a, b) => Math.abs(Math.max(a.srcLen, a.tgtLen) - aroundLen) - Math.abs(Math.max(b.srcLen, b.tgtLen) - aroundLen) || b.ntokens - a.ntokens);
  return groups.slice(0, count);
}

/** The first `bsz` pairs whose source length is within +-2 of `len` (generation batches). */
export function generationBatch(c: BenchCorpus, bsz: number, len: number): Batch {
  const idx: number[] = [];
  for (let i = 0; i < c.dataset.length && idx.length < bsz; i++) if (Math.abs(c.dataset.srcSize(i) - len) <= 2) idx.push(i);
  return c.dataset.collate(idx);
}

/** A batch as plain JSON (what bench/torch_models.py reads). */
export function batchJson(b: Batch): Record<string, unknown> {
  return {
    bsz: b.bsz,
    srcLen: b.srcLen,
    tgtLen: b.tgtLen,
    ntokens: b.ntokens,
    srcTokens: Array.from(b.srcTokens),
    target: Array.from(b.target),
    prevOutputTokens: Array.from(b.prevOutputTokens),
    srcLengths: Array.from(b.srcLengths),
    tgtLengths: Array.from(b.tgtLengths),
  };
}
