/**
 * A TypeScript SentencePiece learner, mirroring `spm_train` (google/sentencepiece
 * trainer_interface.cc, bpe_model_trainer.cc, unigram_model_trainer.cc) closely enough that the
 * model it writes segments text the way spm would, and loads in `spm_encode` and sentencepiece-js.
 *
 * As in spm with `split_by_whitespace` (its default), training works on a table of
 * whitespace-separated word types ("▁"-prefixed) with counts, not on sentences: no piece crosses
 * a word boundary, so this is equivalent and much faster. Kept from spm: reservoir sampling of
 * `inputSentenceSize` lines, the 0.9995 character-coverage rule (rarer characters become
 * <unk>), <unk>/<s>/</s> at ids 0/1/2, pieces of at most 16 characters that do not mix Unicode
 * scripts (split_by_unicode_script) and carry "▁" only as a prefix, BPE piece scores -rank.
 *
 * Normalisation: models are written with the 'identity' normalizer (no precompiled charsmap);
 * callers apply `normalizeText` (NFKC + whitespace cleanup) before training and encoding.
 */
import { DifformerError } from '../errors.js';
import { ModelType, PieceType, encodeModelProto, type SpmPiece } from './spm_proto.js';

export const WS = '\u2581';

export interface LearnOptions {
  vocabSize: number;
  modelType: 'bpe' | 'unigram';
  /** Fraction of character occurrences the alphabet must cover (spm default 0.9995). */
  characterCoverage?: number;
  /** At most this many lines are used, sampled with a seeded reservoir (default 2,000,000). */
  inputSentenceSize?: number;
  /** Lines longer than this many UTF-8 bytes are skipped, as in spm (default 4192). */
  maxSentenceLength?: number;
  /** Longest piece in characters (default 16). */
  maxPieceLength?: number;
  /** Unigram only: number of seed substrings (default min(1e6, 25 * vocabSize)). */
  seedSize?: number;
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

const CONTROL = /[\p{Cc}\u200b\ufeff]/gu;
const SPACES = /[\s\u0085]/gu;
const CLEAN_ASCII = /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/;

/**
 * The normalisation every text goes through before our models see it (what spm's 'nmt_nfkc'
 * does in C++, done here because our models carry the 'identity' rule): Unicode NFKC, every
 * whitespace character becomes a space, other control characters and zero-width spaces are
 * dropped, runs of spaces collapse, ends are trimmed.
 */
export function normalizeText(line: string): string {
  if (CLEAN_ASCII.test(line)) return line; // fast path: most lines are already normal
  // Controls go before NFKC so that what they separated can still compose (keeps this idempotent).
  const text = line.replace(SPACES, ' ').replace(CONTROL, '').normalize('NFKC');
  return text.replace(SPACES, ' ').replace(/ {2,}/g, ' ').trim();
}

// ------------------------------------------------------------------ corpus

export interface WordTable {
  words: string[]; // "▁"-prefixed word types
  counts: number[];
  sentences: number;
}

/** mulberry32: a small seeded PRNG, so sampling is reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reservoir-samples at most `inputSentenceSize` non-empty lines, then counts "▁word" types. */
export async function countWords(
  lines: Iterable<string> | AsyncIterable<string>, opts: LearnOptions,
): Promise<WordTable> {
  const cap = opts.inputSentenceSize ?? 2_000_000;
  const maxBytes = opts.maxSentenceLength ?? 4192;
  const rand = rng(opts.seed ?? 1);
  const kept: string[] = [];
  let seen = 0;
  for await (const raw of lines) {
    if (raw.length === 0 || (raw.length * 3 > maxBytes && Buffer.byteLength(raw) > maxBytes)) continue;
    if (kept.length < cap) kept.push(raw);
    else {
      const j = Math.floor(rand() * (seen + 1));
      if (j < cap) kept[j] = raw;
    }
    seen++;
  }
  const table = new Map<string, number>();
  let sentences = 0;
  for (const raw of kept) {
    const line = normalizeText(raw);
    if (line.length === 0) continue;
    sentences++;
    for (const w of line.split(' ')) {
      const key = WS + w;
      table.set(key, (table.get(key) ?? 0) + 1);
    }
  }
  if (sentences === 0) {
    throw new DifformerError('DIFFORMER_EMPTY_CORPUS', 'cannot learn a SentencePiece model: the training text has no non-empty lines');
  }
  return { words: [...table.keys()], counts: [...table.values()], sentences };
}

// ------------------------------------------------------------------ alphabet and scripts

const SCRIPTS = [
  'Latin', 'Greek', 'Cyrillic', 'Armenian', 'Hebrew', 'Arabic', 'Syriac', 'Thaana', 'Devanagari',
  'Bengali', 'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada', 'Malayalam', 'Sinhala',
  'Thai', 'Lao', 'Tibetan', 'Myanmar', 'Georgian', 'Hangul', 'Ethiopic', 'Khmer', 'Mongolian',
  'Han', 'Hiragana', 'Katakana', 'Common', 'Inherited',
].map((name) => [name, new RegExp(`^\\p{Script=${name}}$`, 'u')] as const);

/** Script class of one character; 0 means "joins anything" ("▁" and combining marks). */
function scriptOf(ch: string): number {
  if (ch === WS) return 0;
  for (let i = 0; i < SCRIPTS.length; i++) {
    const [name, re] = SCRIPTS[i]!;
    if (!re.test(ch)) continue;
    if (name === 'Inherited') return 0;
    // spm treats Hiragana, Katakana and the prolonged sound mark as Han.
    if (name === 'Hiragana' || name === 'Katakana' || ch === '\u30fc') return 1 + SCRIPTS.findIndex(([n]) => n === 'Han');
    return 1 + i;
  }
  return 1 + SCRIPTS.length; // any other script
}

export interface Alphabet {
  chars: string[]; // required characters, most frequent first (ties by code point)
  counts: number[];
  index: Map<string, number>;
}

/** spm's character_coverage rule: keep the most frequent characters until the coverage is met. */
export function buildAlphabet(table: WordTable, coverage: number): Alphabet {
  const freq = new Map<string, number>();
  for (let w = 0; w < table.words.length; w++) {
    const c = table.counts[w]!;
    for (const ch of table.words[w]!) freq.set(ch, (freq.get(ch) ?? 0) + c);
  }
  let total = 0;
  for (const v of freq.values()) total += v;
  const sorted = [...freq].sort((x, y) => y[1] - x[1] || (x[0].codePointAt(0)! - y[0].codePointAt(0)!));
  const chars: string[] = [];
  const counts: number[] = [];
  let acc = 0;
  for (const [ch, n] of sorted) {
    if (acc / total >= coverage) break;
    acc += n;
    chars.push(ch);
    counts.push(n);
  }
  return { chars, counts, index: new Map(chars.map((c, i) => [c, i])) };
}

function metaPieces(): SpmPiece[] {
  return [
    { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
    { piece: '<s>', score: 0, type: PieceType.CONTROL },
    { piece: '</s>', score: 0, type: PieceType.CONTROL },
  ];
}

function tooBig(opts: LearnOptions, max: number): DifformerError {
  return new DifformerError('DIFFORMER_BAD_OPTION',
    `--spm-vocab-size ${opts.vocabSize} is too large for this corpus (at most ${max} pieces can be learned); lower it`);
}

function tooSmall(opts: LearnOptions, alphabet: number): DifformerError {
  return new DifformerError('DIFFORMER_BAD_OPTION',
    `--spm-vocab-size ${opts.vocabSize} is smaller than the alphabet (${alphabet} characters + 3 special pieces); raise it`);
}

// ------------------------------------------------------------------ BPE

export interface LearnResult {
  pieces: SpmPiece[];
  /** The learner's own final segmentation of a training word type ("▁"-prefixed). */
  segment(word: string): string[] | undefined;
}

const KEY = 2 ** 22; // pair key = left * KEY + right

/**
 * BPE over the word-type table: exact pair counts, incremental updates from an inverted index
 * (pair -> word types), a max-heap with lazy invalidation; ties go to the smaller pair key
 * (symbol ids are assigned deterministically), so output is a pure function of the input.
 */
export function learnBpe(table: WordTable, opts: LearnOptions): LearnResult {
  const alpha = buildAlphabet(table, opts.characterCoverage ?? 0.9995);
  const maxLen = opts.maxPieceLength ?? 16;
  const target = opts.vocabSize - 3 - alpha.chars.length;
  if (target < 0) throw tooSmall(opts, alpha.chars.length);
  // Symbol 0 is the unknown character: it never pairs. Characters are 1..n.
  const str = ['', ...alpha.chars];
  const len = [1, ...alpha.chars.map(() => 1)];
  const scr = [0, ...alpha.chars.map(scriptOf)];
  const strId = new Map(str.map((s, i) => [s, i] as const));
  const ok = (a: number, b: number): boolean => a !== 0 && b !== 0 && str[b]![0] !== WS &&
    len[a]! + len[b]! <= maxLen && (scr[a] === 0 || scr[b] === 0 || scr[a] === scr[b]);

  const nWords = table.words.length;
  const start = new Int32Array(nWords + 1);
  for (let w = 0; w < nWords; w++) start[w + 1] = start[w]! + [...table.words[w]!].length;
  const buf = new Int32Array(start[nWords]!);
  const size = new Int32Array(nWords);
  for (let w = 0, p = 0; w < nWords; w++) {
    for (const ch of table.words[w]!) buf[p++] = (alpha.index.get(ch) ?? -1) + 1;
    size[w] = start[w + 1]! - start[w]!;
  }

  const count = new Map<number, number>();
  const where = new Map<number, number[]>();
  const addWhere = (k: number, w: number): void => {
    const l = where.get(k);
    if (l) { if (l[l.length - 1] !== w) l.push(w); } else where.set(k, [w]);
  };
  for (let w = 0; w < nWords; w++) {
    for (let i = start[w]! + 1; i < start[w]! + size[w]!; i++) {
      const a = buf[i - 1]!, b = buf[i]!;
      if (!ok(a, b)) continue;
      const k = a * KEY + b;
      count.set(k, (count.get(k) ?? 0) + table.counts[w]!);
      addWhere(k, w);
    }
  }

  // Max-heap of (count, key) entries; stale entries are skipped or re-pushed when popped.
  const hc: number[] = [];
  const hk: number[] = [];
  const above = (i: number, j: number): boolean => hc[i]! > hc[j]! || (hc[i] === hc[j] && hk[i]! < hk[j]!);
  const swap = (i: number, j: number): void => {
    [hc[i], hc[j]] = [hc[j]!, hc[i]!];
    [hk[i], hk[j]] = [hk[j]!, hk[i]!];
  };
  const push = (c: number, k: number): void => {
    hc.push(c); hk.push(k);
    for (let i = hc.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!above(i, p)) break;
      swap(i, p); i = p;
    }
  };
  const pop = (): void => {
    const last = hc.length - 1;
    swap(0, last); hc.pop(); hk.pop();
    for (let i = 0; ;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < hc.length && above(l, m)) m = l;
      if (r < hc.length && above(r, m)) m = r;
      if (m === i) break;
      swap(i, m); i = m;
    }
  };
  for (const [k, c] of count) push(c, k);

  const merged: string[] = [];
  const seen = new Int32Array(nWords).fill(-1);
  let step = 0;
  while (merged.length < target) {
    let best = -1;
    while (hc.length > 0) {
      const c = hc[0]!, k = hk[0]!;
      pop();
      const now = count.get(k) ?? 0;
      if (now === c) { best = k; break; }
      if (now > 0 && now < c) push(now, k); // decreased since pushed; a larger one was pushed anew
    }
    if (best < 0) throw tooBig(opts, 3 + alpha.chars.length + merged.length);
    const a = Math.floor(best / KEY), b = best - a * KEY;
    const s = str[a]! + str[b]!;
    let id = strId.get(s);
    if (id === undefined) {
      // A string reachable by two different pairs stays one symbol (spm merges by piece string).
      id = str.length;
      str.push(s); len.push(len[a]! + len[b]!); scr.push(scr[a] || scr[b]!);
      strId.set(s, id);
      merged.push(s);
    }
    const list = where.get(best) ?? [];
    count.delete(best);
    where.delete(best);
    const delta = new Map<number, number>();
    const bump = (x: number, y: number, d: number, w: number): void => {
      if (!ok(x, y)) return;
      const k = x * KEY + y;
      if (k === best) return;
      delta.set(k, (delta.get(k) ?? 0) + d);
      if (d > 0) addWhere(k, w);
    };
    for (const w of list) {
      if (seen[w] === step) continue;
      seen[w] = step;
      const c = table.counts[w]!;
      const s0 = start[w]!, end = s0 + size[w]!;
      let o = s0;
      for (let i = s0; i < end;) {
        if (i + 1 < end && buf[i] === a && buf[i + 1] === b) {
          if (o > s0) { bump(buf[o - 1]!, a, -c, w); bump(buf[o - 1]!, id, c, w); }
          if (i + 2 < end) { bump(b, buf[i + 2]!, -c, w); bump(id, buf[i + 2]!, c, w); }
          buf[o++] = id;
          i += 2;
        } else buf[o++] = buf[i++]!;
      }
      size[w] = o - s0;
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const n = (count.get(k) ?? 0) + d;
      if (n <= 0) { count.delete(k); where.delete(k); } else count.set(k, n);
      if (d > 0) push(n, k);
    }
    step++;
    if (step % 64 === 0) opts.onProgress?.(merged.length, target);
  }
  opts.onProgress?.(target, target);

  const pieces = metaPieces();
  for (const s of merged) pieces.push({ piece: s, score: -(pieces.length - 3), type: PieceType.NORMAL });
  for (const ch of alpha.chars) pieces.push({ piece: ch, score: -(pieces.length - 3), type: PieceType.NORMAL });
  const wordIndex = new Map(table.words.map((w, i) => [w, i] as const));
  return {
    pieces,
    segment(word) {
      const w = wordIndex.get(word);
      if (w === undefined) return undefined;
      const chars = [...word];
      const out: string[] = [];
      let pos = 0;
      let prevUnk = false;
      for (const x of buf.subarray(start[w]!, start[w]! + size[w]!)) {
        const piece = chars.slice(pos, pos + len[x]!).join('');
        pos += len[x]!;
        // Like spm, a run of unknown characters comes out as one piece.
        if (x === 0 && prevUnk) out[out.length - 1] += piece; else out.push(piece);
        prevUnk = x === 0;
      }
      return out;
    },
  };
}

// ------------------------------------------------------------------ unigram

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

// ------------------------------------------------------------------ model file

/** Learns a model from raw lines and returns the serialised `.model` bytes. */
export async function learnSentencePiece(
  lines: Iterable<string> | AsyncIterable<string>, opts: LearnOptions,
): Promise<Uint8Array> {
  const table = await countWords(lines, opts);
  const { pieces } = opts.modelType === 'unigram' ? learnUnigram(table, opts) : learnBpe(table, opts);
  return encodeModelProto({
    pieces,
    trainerSpec: {
      modelType: opts.modelType === 'unigram' ? ModelType.UNIGRAM : ModelType.BPE,
      vocabSize: opts.vocabSize,
      characterCoverage: opts.characterCoverage ?? 0.9995,
      inputSentenceSize: opts.inputSentenceSize ?? 2_000_000,
      shuffleInputSentence: true,
      maxSentenceLength: opts.maxSentenceLength ?? 4192,
      maxSentencepieceLength: opts.maxPieceLength ?? 16,
      splitByUnicodeScript: true, splitByWhitespace: true, splitByNumber: true,
      treatWhitespaceAsSuffix: false, splitDigits: false, allowWhitespaceOnlyPieces: false,
      byteFallback: false, hardVocabLimit: true, useAllVocab: false,
      unkId: 0, bosId: 1, eosId: 2, padId: -1,
      unkPiece: '<unk>', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>', unkSurface: ' \u2047 ',
    },
    normalizerSpec: {
      name: 'identity', precompiledCharsmap: new Uint8Array(0),
      addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true,
    },
  });
}
