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
import { learnUnigram } from './spm_unigram.js';

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
export function scriptOf(ch: string): number {
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

export function metaPieces(): SpmPiece[] {
  return [
    { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
    { piece: '<s>', score: 0, type: PieceType.CONTROL },
    { piece: '</s>', score: 0, type: PieceType.CONTROL },
  ];
}

export function tooBig(opts: LearnOptions, max: number): DifformerError {
  return new DifformerError('DIFFORMER_BAD_OPTION',
    `--spm-vocab-size ${opts.vocabSize} is too large for this corpus (at most ${max} pieces can be learned); lower it`);
}

export function tooSmall(opts: LearnOptions, alphabet: number): DifformerError {
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
