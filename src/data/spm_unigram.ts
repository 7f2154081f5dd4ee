/**
 * The unigram half of the TypeScript SentencePiece learner (google/sentencepiece
 * unigram_model_trainer.cc): seed pieces from frequent substrings, EM rounds with a Bayesian
 * M-step (digamma), pruning by each piece's loss against its second-best segmentation.
 * Corpus counting, the alphabet and the BPE learner are in ./spm_train.ts.
 */
import { PieceType } from './spm_proto.js';
import { WS, buildAlphabet, metaPieces, tooBig, tooSmall, scriptOf, type LearnOptions, type LearnResult, type WordTable } from './spm_train.js';

/** Digamma, as spm's unigram trainer computes it (for the Bayesian M-step). */
function digamma(x: number): number {
  let r = 0;
  for (; x < 7; x++) r -= 1 / x;
  x -= 0.5;
  const xx = 1 / x, xx2 = xx * xx, xx4 = xx2 * xx2;
  return r + Math.log(x) + xx2 / 24 - (7 / 960) * xx4 + (31 / 8064) * xx4 * xx2 - (127 / 30720) * xx4 * xx4;
}

const logAdd = (a: number, b: number): number =>
  a === -Infinity ? b : b === -Infinity ? a : Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)));

/**
 * Pieces as alphabet-index sequences in a trie whose transitions (node * nChars + char -> node)
 * live in an open-addressing hash table on typed arrays (several times faster than a Map here).
 */
class Lattice {
  private readonly keys: Int32Array;
  private readonly vals: Int32Array;
  private readonly shift: number;
  private readonly nodePiece: Int32Array;
  // Edges of the current sentence: start, end, piece (-1 = unknown character).
  es: Int32Array = new Int32Array(1 << 12);
  ee: Int32Array = new Int32Array(1 << 12);
  ep: Int32Array = new Int32Array(1 << 12);
  n = 0;
  private best = new Float64Array(64);
  private aux = new Float64Array(64);
  private back = new Int32Array(64);

  constructor(private readonly nChars: number, codes: ArrayLike<number>[], readonly unkScore: number) {
    let total = 1;
    for (const c of codes) total += c.length;
    let bits = 4;
    while (1 << bits < 2 * total) bits++;
    this.keys = new Int32Array(1 << bits).fill(-1);
    this.vals = new Int32Array(1 << bits);
    this.shift = 32 - bits;
    this.nodePiece = new Int32Array(total).fill(-1);
    let nodes = 1;
    codes.forEach((c, id) => {
      let node = 0;
      for (let i = 0; i < c.length; i++) {
        const k = node * nChars + c[i]!;
        let h = Math.imul(k, 0x9e3779b1) >>> this.shift;
        while (this.keys[h] !== -1 && this.keys[h] !== k) h = (h + 1) & (this.keys.length - 1);
        if (this.keys[h] !== k) { this.keys[h] = k; this.vals[h] = nodes++; }
        node = this.vals[h]!;
      }
      this.nodePiece[node] = id;
    });
  }

  private reserve(len: number): void {
    if (this.best.length > len) return;
    this.best = new Float64Array(2 * len + 2); this.aux = new Float64Array(2 * len + 2); this.back = new Int32Array(2 * len + 2);
  }

  private add(s: number, e: number, p: number): void {
    if (this.n === this.es.length) {
      const grow = (a: Int32Array): Int32Array => { const b = new Int32Array(a.length * 2); b.set(a); return b; };
      this.es = grow(this.es); this.ee = grow(this.ee); this.ep = grow(this.ep);
    }
    this.es[this.n] = s; this.ee[this.n] = e; this.ep[this.n++] = p;
  }

  /**
   * All pieces over codes[from, to) (positions relative to `from`), sorted by start, plus an
   * unknown-character edge wherever no single-character piece exists (as spm does).
   * skipWhole leaves out the piece spanning the whole range (for second-best segmentations).
   */
  fill(codes: Int32Array, from: number, to: number, skipWhole = false): void {
    this.n = 0;
    const { keys, vals, nodePiece, nChars, shift } = this;
    const mask = keys.length - 1;
    for (let i = from; i < to; i++) {
      let node = 0;
      let single = false;
      for (let j = i; j < to && codes[j]! >= 0; j++) {
        const k = node * nChars + codes[j]!;
        let h = Math.imul(k, 0x9e3779b1) >>> shift;
        while (keys[h] !== k && keys[h] !== -1) h = (h + 1) & mask;
        if (keys[h] !== k) break;
        node = vals[h]!;
        const p = nodePiece[node]!;
        if (p < 0 || (skipWhole && i === from && j === to - 1)) continue;
        this.add(i - from, j + 1 - from, p);
        if (j === i) single = true;
      }
      if (!single && !(skipWhole && to - from === 1)) this.add(i - from, i + 1 - from, -1);
    }
  }

  /**
   * Best path over the filled edges: [score, piece ids (-1 unknown)], or null if none. Ties go
   * to the first-found edge as in spm; f32 repeats spm's arithmetic so near-ties break alike.
   */
  viterbi(len: number, score: Float64Array, f32 = false): [number, number[]] | null {
    this.reserve(len);
    const { best, back } = this;
    best.fill(-Infinity, 0, len + 1);
    back.fill(-1, 0, len + 1);
    best[0] = 0;
    for (let k = 0; k < this.n; k++) {
      const s = this.es[k]!, e = this.ee[k]!, p = this.ep[k]!;
      // spm (unigram_model.cc) adds a float score to the float path score in double precision
      // (a ternary with a double branch) but stores the best in float; unknowns stay in float.
      const v = !f32 ? best[s]! + (p < 0 ? this.unkScore : score[p]!)
        : p < 0 ? Math.fround(best[s]! + Math.fround(this.unkScore)) : best[s]! + Math.fround(score[p]!);
      if (v > best[e]!) { best[e] = f32 ? Math.fround(v) : v; back[e] = k; }
    }
    if (back[len]! < 0) return null;
    const path: number[] = [];
    for (let pos = len; pos > 0; pos = this.es[back[pos]!]!) path.push(this.ep[back[pos]!]!);
    return [best[len]!, path.reverse()];
  }

  /** Adds count * P(edge) to expected[piece] (forward-backward; linear space, log space if it underflows). */
  expect(len: number, score: Float64Array, prob: Float64Array, count: number, expected: Float64Array): void {
    this.reserve(len);
    const { best: fwd, aux: bwd } = this;
    const { es, ee, ep, n } = this;
    const unkProb = Math.exp(this.unkScore);
    fwd.fill(0, 0, len + 1); bwd.fill(0, 0, len + 1);
    fwd[0] = 1; bwd[len] = 1;
    for (let k = 0; k < n; k++) fwd[ee[k]!] += fwd[es[k]!]! * (ep[k]! < 0 ? unkProb : prob[ep[k]!]!);
    for (let k = n - 1; k >= 0; k--) bwd[es[k]!] += bwd[ee[k]!]! * (ep[k]! < 0 ? unkProb : prob[ep[k]!]!);
    const z = fwd[len]!;
    if (z > 1e-280 && z < Infinity) {
      for (let k = 0; k < n; k++) {
        if (ep[k]! >= 0) expected[ep[k]!] += (count * fwd[es[k]!]! * prob[ep[k]!]! * bwd[ee[k]!]!) / z;
      }
      return;
    }
    const sc = (k: number): number => (ep[k]! < 0 ? this.unkScore : score[ep[k]!]!);
    fwd.fill(-Infinity, 0, len + 1); bwd.fill(-Infinity, 0, len + 1);
    fwd[0] = 0; bwd[len] = 0;
    for (let k = 0; k < n; k++) fwd[ee[k]!] = logAdd(fwd[ee[k]!]!, fwd[es[k]!]! + sc(k));
    for (let k = n - 1; k >= 0; k--) bwd[es[k]!] = logAdd(bwd[es[k]!]!, bwd[ee[k]!]! + sc(k));
    for (let k = 0; k < n; k++) {
      if (ep[k]! >= 0) expected[ep[k]!] += count * Math.exp(fwd[es[k]!]! + sc(k) + bwd[ee[k]!]! - fwd[len]!);
    }
  }
}

/**
 * Unigram LM training as in spm: seed with the most frequent substrings (frequency x length),
 * then rounds of EM (forward-backward expected counts, digamma M-step, drop pieces expected
 * less than 0.5 times) and pruning of the pieces whose removal costs the least likelihood
 * (each piece's loss is computed against its second-best segmentation), shrinking by 0.75 per
 * round until vocabSize * 1.1 remain; the best-scoring vocabSize pieces are kept.
 * Characters of the alphabet are always kept.
 */
export function learnUnigram(table: WordTable, opts: LearnOptions): LearnResult {
  const alpha = buildAlphabet(table, opts.characterCoverage ?? 0.9995);
  const maxLen = opts.maxPieceLength ?? 16;
  const nc = alpha.chars.length;
  const want = opts.vocabSize - 3;
  if (want < nc) throw tooSmall(opts, nc);
  const charScript = alpha.chars.map(scriptOf);
  const nWords = table.words.length;
  const start = new Int32Array(nWords + 1);
  const wordChars = table.words.map((w) => [...w]);
  for (let w = 0; w < nWords; w++) start[w + 1] = start[w]! + wordChars[w]!.length;
  const codes = new Int32Array(start[nWords]!);
  const unit = new Int32Array(start[nWords]! + nWords); // UTF-16 offset of each character (and end)
  for (let w = 0, p = 0; w < nWords; w++) {
    let u = 0;
    for (const ch of wordChars[w]!) { unit[p + w] = u; u += ch.length; codes[p++] = alpha.index.get(ch) ?? -1; }
    unit[p + w] = u;
  }

  // Visits every valid multi-character substring (no unknown char, "▁" only first, one script).
  const substrings = (visit: (w: number, i: number, j: number, h: number) => void): void => {
    for (let w = 0; w < nWords; w++) {
      for (let i = start[w]!; i < start[w + 1]!; i++) {
        if (codes[i]! < 0) continue;
        let h = codes[i]! + 1;
        let script = charScript[codes[i]!]!;
        for (let j = i + 1; j < Math.min(start[w + 1]!, i + maxLen); j++) {
          const c = codes[j]!;
          if (c < 0 || alpha.chars[c] === WS) break;
          const s = charScript[c]!;
          if (s !== 0 && script !== 0 && s !== script) break;
          script ||= s;
          h = (Math.imul(h, 0x01000193) ^ (c + 1)) >>> 0;
          visit(w, i, j + 1, h);
        }
      }
    }
  };
  // Seeds: approximate counts in a hashed table first, exact counts only for frequent buckets.
  const seedSize = opts.seedSize ?? Math.min(1_000_000, 25 * opts.vocabSize);
  const MASK = (1 << 24) - 1;
  const approx = new Uint32Array(MASK + 1);
  substrings((w, _i, _j, h) => { approx[h & MASK] += table.counts[w]!; });
  const hist = new Uint32Array(1 << 16);
  for (const v of approx) if (v > 0) hist[Math.min(v, hist.length - 1)]!++;
  let threshold = hist.length - 1;
  for (let acc = hist[threshold]!; threshold > 2 && acc + hist[threshold - 1]! <= 1.5 * seedSize;) acc += hist[--threshold]!;
  const exact = new Map<string, number>();
  substrings((w, i, j, h) => {
    if (approx[h & MASK]! < threshold) return;
    const s = table.words[w]!.substring(unit[i + w]!, unit[j + w]!);
    exact.set(s, (exact.get(s) ?? 0) + table.counts[w]!);
  });
  const seeds = [...exact].map(([s, f]) => [s, f, f * [...s].length] as const)
    .sort((x, y) => y[2] - x[2] || (x[0] < y[0] ? -1 : 1)).slice(0, seedSize);
  exact.clear();

  let strs = [...alpha.chars, ...seeds.map((s) => s[0])];
  let pcodes: number[][] = strs.map((s) => [...s].map((ch) => alpha.index.get(ch)!));
  let score = new Float64Array(strs.length);
  {
    const freqs = [...alpha.counts, ...seeds.map((s) => s[1])];
    const logSum = Math.log(freqs.reduce((a, b) => a + b, 0));
    freqs.forEach((f, i) => { score[i] = Math.log(f) - logSum; });
  }
  const minScore = (): number => score.reduce((a, b) => Math.min(a, b), 0) - 10; // spm's unk penalty
  const keep = (ids: number[]): void => {
    strs = ids.map((i) => strs[i]!); pcodes = ids.map((i) => pcodes[i]!); score = Float64Array.from(ids, (i) => score[i]!);
  };
  const desired = Math.floor(want * 1.1);
  const rounds = Math.max(1, Math.ceil(Math.log(strs.length / desired) / Math.log(1 / 0.75)));
  for (let round = 0; ; round++) {
    opts.onProgress?.(Math.min(round, rounds), rounds + 1);
    for (let sub = 0; sub < 2; sub++) {
      // E-step: expected piece counts by forward-backward over each word's lattice.
      const lat = new Lattice(nc, pcodes, minScore());
      const prob = score.map(Math.exp);
      const expected = new Float64Array(strs.length);
      for (let w = 0; w < nWords; w++) {
        lat.fill(codes, start[w]!, start[w + 1]!);
        lat.expect(start[w + 1]! - start[w]!, score, prob, table.counts[w]!, expected);
      }
      // M-step (variational Bayes as in spm), dropping rarely expected multi-char pieces.
      const ids = strs.map((_, i) => i).filter((i) => i < nc || expected[i]! >= 0.5);
      const total = ids.reduce((a, i) => a + expected[i]!, 0);
      keep(ids);
      const dsum = digamma(total);
      // (Characters are kept even when rarely expected; floor them at the drop threshold.)
      ids.forEach((old, i) => { score[i] = digamma(Math.max(expected[old]!, 0.5)) - dsum; });
    }
    if (strs.length <= desired) break;
    // Prune: drop pieces whose best segmentation is not themselves, then the lowest-loss ones.
    const lat = new Lattice(nc, pcodes, minScore());
    const alt: (number[] | null)[] = strs.map(() => null);
    const removable = new Uint8Array(strs.length);
    for (let i = nc; i < strs.length; i++) {
      const pc = Int32Array.from(pcodes[i]!);
      lat.fill(pc, 0, pc.length, true);
      const second = lat.viterbi(pc.length, score);
      if (second && second[0] > score[i]!) removable[i] = 1;
      else if (second) alt[i] = second[1];
    }
    const freq = new Float64Array(strs.length);
    for (let w = 0; w < nWords; w++) {
      lat.fill(codes, start[w]!, start[w + 1]!);
      for (const p of lat.viterbi(start[w + 1]! - start[w]!, score)![1]) if (p >= 0) freq[p] += table.counts[w]!;
    }
    const sum = freq.reduce((a, b) => a + b, 0);
    const logSum = Math.log(sum);
    const kept: number[] = [];
    const cands: [number, number][] = [];
    for (let i = 0; i < strs.length; i++) {
      if (i < nc) { kept.push(i); continue; }
      if (freq[i] === 0 || removable[i]) continue;
      const a = alt[i];
      if (!a) { kept.push(i); continue; }
      const logSumAlt = Math.log(sum + freq[i]! * (a.length - 1));
      let logAlt = 0;
      for (const n of a) logAlt += Math.log((n >= 0 ? freq[n]! : 0) + freq[i]!) - logSumAlt;
      cands.push([i, (freq[i]! / sum) * (Math.log(freq[i]!) - logSum - logAlt)]);
    }
    cands.sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    const size = Math.max(desired, Math.floor(0.75 * strs.length));
    for (const [i] of cands) { if (kept.length >= size) break; kept.push(i); }
    const before = strs.length;
    keep(kept.sort((x, y) => x - y));
    if (strs.length === before) break; // nothing left to prune (pieces without alternatives)
  }
  // Finalize: the best-scoring pieces, characters always included.
  const order = strs.map((_, i) => i).filter((i) => i >= nc)
    .sort((x, y) => score[y]! - score[x]! || (strs[x]! < strs[y]! ? -1 : 1)).slice(0, want - nc);
  if (order.length < want - nc) throw tooBig(opts, 3 + nc + order.length);
  const final = [...order, ...strs.map((_, i) => i).slice(0, nc)]
    .sort((x, y) => score[y]! - score[x]! || (strs[x]! < strs[y]! ? -1 : 1));
  keep(final);
  score = score.map(Math.fround); // the model stores float32; segment with exactly those scores
  opts.onProgress?.(rounds + 1, rounds + 1);
  const pieces = metaPieces();
  strs.forEach((s, i) => pieces.push({ piece: s, score: score[i]!, type: PieceType.NORMAL }));
  const lat = new Lattice(nc, pcodes, minScore());
  return {
    pieces,
    segment(word) {
      const chars = [...word];
      const c = Int32Array.from(chars, (ch) => alpha.index.get(ch) ?? -1);
      lat.fill(c, 0, c.length);
      const path = lat.viterbi(c.length, score, true)![1];
      const out: string[] = [];
      let pos = 0;
      path.forEach((p, k) => {
        const n = p >= 0 ? pcodes[p]!.length : 1;
        const piece = chars.slice(pos, pos + n).join('');
        pos += n;
        if (p < 0 && k > 0 && path[k - 1]! < 0) out[out.length - 1] += piece; else out.push(piece);
      });
      return out;
    },
  };
}
