/**
 * --init-embeddings FILE and --freeze-embeddings, for every model whose token embeddings are
 * named as fairseq's (`encoder.embed_tokens.weight`, `decoder.embed_tokens.weight`; a shared
 * table counts once). Pretrained rows are mapped onto the dictionary by token string; rows of
 * tokens not found keep the model's own initialisation. Formats:
 *   - word2vec / GloVe / fastText TEXT: `token v1 .. vd` per line, an optional `V d` header line;
 *     `.gz` is read too. Streamed: only the rows the dictionary can use are kept in memory.
 *   - safetensors: the tensor named `*word_embeddings.weight` (a BERT checkpoint or an export of
 *     it), else the file's only 2-D tensor, with one token per line in `vocab.txt` next to it
 *     (or --init-embeddings-vocab); rows past the vocabulary are ignored. F32, F16, BF16, F64.
 *
 * Matching (documented in the README text): each side's subword convention is detected from its
 * tokens: SentencePiece (word-initial pieces start with '▁'), WordPiece (continuations start
 * with '##') or plain words. A dictionary token is rewritten into the table's convention first
 * (SentencePiece '▁word' <-> WordPiece/plain 'word'; SentencePiece continuation 'ing' <->
 * WordPiece '##ing'; plain tables have no continuations), then tried as it is, then both
 * lowercased. Specials: <s> -> [CLS], </s> -> [SEP], <unk> -> [UNK] when the exact string is
 * missing; <pad> and the madeupwordNNNN padding are never assigned nor counted.
 */
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import * as tf from '@tensorflow/tfjs';
import type { Dictionary } from '../data/dictionary.js';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
import type { ParamStore } from '../nn/params.js';
import { boolFlag, optionalStringFlag, type OptionTable } from '../options.js';

export interface EmbeddingInitOptions {
  initEmbeddings: string | undefined;
  initEmbeddingsVocab: string | undefined;
  freezeEmbeddings: boolean;
}

export const embeddingInitDefaults: Readonly<EmbeddingInitOptions> = Object.freeze({
  initEmbeddings: undefined,
  initEmbeddingsVocab: undefined,
  freezeEmbeddings: false,
});

export const embeddingInitOptionTable: OptionTable<EmbeddingInitOptions> = {
  initEmbeddings: optionalStringFlag('--init-embeddings', 'initialise token embeddings from word2vec/GloVe text or safetensors (*word_embeddings.weight + vocab.txt), mapped by token string', 'FILE'),
  initEmbeddingsVocab: optionalStringFlag('--init-embeddings-vocab', 'vocabulary of a safetensors --init-embeddings file (default: vocab.txt next to it)', 'FILE'),
  freezeEmbeddings: boolFlag('--freeze-embeddings', 'do not train the token embeddings (nor an output projection tied to them)'),
};

export const EMBEDDING_PARAMS = ['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'] as const;

export type TokenConvention = 'sentencepiece' | 'wordpiece' | 'plain';

/** The pretrained rows kept (those some candidate key asked for). */
export interface EmbeddingTable {
  dim: number;
  /** Entries in the file (vocabulary size). */
  entries: number;
  vectors: Map<string, Float32Array>;
  convention: TokenConvention;
}

/** SentencePiece if >= 5% of tokens start with '▁', else WordPiece if >= 5% start with '##', else plain. */
export function detectConvention(tokens: Iterable<string>): TokenConvention {
  let n = 0;
  let spm = 0;
  let wp = 0;
  for (const t of tokens) {
    n++;
    if (t.startsWith('\u2581')) spm++;
    else if (t.startsWith('##') && t.length > 2) wp++;
  }
  if (n > 0 && spm / n >= 0.05) return 'sentencepiece';
  if (n > 0 && wp / n >= 0.05) return 'wordpiece';
  return 'plain';
}

interface Piece {
  continuation: boolean;
  surface: string;
}

function toPiece(token: string, conv: TokenConvention): Piece | null {
  if (conv === 'sentencepiece') return token.startsWith('\u2581') ? (token.length > 1 ? { continuation: false, surface: token.slice(1) } : null) : { continuation: true, surface: token };
  if (conv === 'wordpiece' && token.startsWith('##') && token.length > 2) return { continuation: true, surface: token.slice(2) };
  return { continuation: false, surface: token };
}

function fromPiece(p: Piece, conv: TokenConvention): string | null {
  if (conv === 'sentencepiece') return p.continuation ? p.surface : `\u2581${p.surface}`;
  if (conv === 'wordpiece') return p.continuation ? `##${p.surface}` : p.surface;
  return p.continuation ? null : p.surface;
}

const SPECIALS: Record<string, string[]> = { '<s>': ['[CLS]'], '</s>': ['[SEP]'], '<unk>': ['[UNK]', '<UNK>', 'UNK'] };

/** Table keys to try for a dictionary token, in order (see the file comment). */
export function candidateKeys(token: string, dictConv: TokenConvention, tableConv: TokenConvention): string[] {
  const out: string[] = [];
  const push = (k: string | null) => {
    if (k !== null && k !== '' && !out.includes(k)) out.push(k);
  };
  if (token in SPECIALS) {
    push(token);
    for (const k of SPECIALS[token]!) push(k);
    return out;
  }
  const p = toPiece(token, dictConv);
  if (p) push(fromPiece(p, tableConv));
  push(token);
  if (p) push(fromPiece({ ...p, surface: p.surface.toLowerCase() }, tableConv));
  push(token.toLowerCase());
  return out;
}

// ---- reading tables ---------------------------------------------------------------------------

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** One 2-D tensor of a safetensors file, read without loading the others. */
function readSafetensorsMatrix(path: string): { name: string; rows: number; dim: number; data: Float32Array } {
  const bad = (why: string) => new DifformerError('DIFFORMER_BAD_DATA', `--init-embeddings ${path}: ${why}`);
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const hbuf = Buffer.alloc(n);
    if (readSync(fd, hbuf, 0, n, 8) !== n) throw bad('truncated safetensors header');
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(hbuf.toString('utf8')) as typeof header;
    } catch {
      throw bad('not a safetensors file (header is not JSON)');
    }
    const mats = Object.entries(header).filter(([k, v]) => k !== '__metadata__' && v.shape?.length === 2);
    const named = mats.filter(([k]) => k.endsWith('word_embeddings.weight'));
    const pick = named.length === 1 ? named[0] : named.length === 0 && mats.length === 1 ? mats[0] : undefined;
    if (!pick) {
      const list = (named.length > 1 ? named : mats).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ');
      throw bad(`cannot tell which tensor holds the word embeddings (${list || 'no 2-D tensors'}); export one tensor, or name it '*word_embeddings.weight'`);
    }
    const [name, info] = pick;
    const [rows, dim] = info.shape as [number, number];
    const [b, e] = info.data_offsets;
    const raw = Buffer.alloc(e - b);
    if (readSync(fd, raw, 0, e - b, 8 + n + b) !== e - b) throw bad(`tensor ${name} runs past the end of the file`);
    const count = rows * dim;
    const data = new Float32Array(count);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (info.dtype === 'F32') for (let i = 0; i < count; i++) data[i] = dv.getFloat32(4 * i, true);
    else if (info.dtype === 'F64') for (let i = 0; i < count; i++) data[i] = dv.getFloat64(8 * i, true);
    else if (info.dtype === 'F16') for (let i = 0; i < count; i++) data[i] = halfToFloat(dv.getUint16(2 * i, true));
    else if (info.dtype === 'BF16') {
      const bits = new Uint32Array(1);
      const asFloat = new Float32Array(bits.buffer); // bf16 is the top half of a float32
      for (let i = 0; i < count; i++) {
        bits[0] = dv.getUint16(2 * i, true) << 16;
        data[i] = asFloat[0]!;
      }
    }
    else throw bad(`tensor ${name} has dtype ${info.dtype}; export it as float32`);
    return { name, rows, dim, data };
  } finally {
    closeSync(fd);
  }
}

function readSafetensorsTable(path: string, vocabPath: string | undefined, wanted: (k: string) => boolean): EmbeddingTable {
  const vpath = vocabPath ?? join(dirname(path), 'vocab.txt');
  if (!existsSync(vpath)) {
    throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `--init-embeddings ${path} needs its vocabulary: ${vpath} not found (one token per line, row order; or pass --init-embeddings-vocab)`);
  }
  const vocab = readFileSync(vpath, 'utf8').split('\n').map((l) => l.replace(/\r$/, ''));
  if (vocab[vocab.length - 1] === '') vocab.pop();
  const m = readSafetensorsMatrix(path);
  if (vocab.length > m.rows) {
    throw new DifformerError('DIFFORMER_BAD_DATA', `${vpath} lists ${vocab.length} tokens but ${m.name} in ${path} has only ${m.rows} rows`);
  }
  const vectors = new Map<string, Float32Array>();
  vocab.forEach((tok, i) => {
    if (!vectors.has(tok) && wanted(tok)) vectors.set(tok, m.data.slice(i * m.dim, (i + 1) * m.dim));
  });
  return { dim: m.dim, entries: vocab.length, vectors, convention: detectConvention(vocab) };
}

async function readTextTable(path: string, wanted: (k: string) => boolean): Promise<EmbeddingTable> {
  const stream = createReadStream(path);
  const input = path.endsWith('.gz') ? stream.pipe(createGunzip()) : stream;
  const rl = createInterface({ input, crlfDelay: Infinity });
  let dim = 0;
  let lineNo = 0;
  let entries = 0;
  let spm = 0;
  let wp = 0;
  const vectors = new Map<string, Float32Array>();
  for await (const raw of rl) {
    lineNo++;
    const line = raw.trimEnd(); // word2vec's writer leaves a trailing space
    if (line === '') continue;
    const fields = line.split(' ');
    if (lineNo === 1 && fields.length === 2 && /^\d+$/.test(fields[0]!) && /^\d+$/.test(fields[1]!)) {
      dim = Number(fields[1]); // the "V d" header
      continue;
    }
    if (dim === 0) dim = fields.length - 1;
    if (fields.length < dim + 1 || dim < 1) {
      throw new DifformerError('DIFFORMER_BAD_DATA', `${path}:${lineNo}: expected a token and ${dim} numbers, got ${fields.length} fields`);
    }
    // GloVe 840B has a few tokens with spaces: the token is all but the last d fields
    const tok = fields.slice(0, fields.length - dim).join(' ');
    entries++;
    if (tok.startsWith('\u2581')) spm++;
    else if (tok.startsWith('##') && tok.length > 2) wp++;
    if (vectors.has(tok) || !wanted(tok)) continue;
    const v = new Float32Array(dim);
    for (let i = 0; i < dim; i++) {
      const x = Number(fields[fields.length - dim + i]);
      if (!Number.isFinite(x)) throw new DifformerError('DIFFORMER_BAD_DATA', `${path}:${lineNo}: '${fields[fields.length - dim + i]}' is not a number`);
      v[i] = x;
    }
    vectors.set(tok, v);
  }
  if (entries === 0) throw new DifformerError('DIFFORMER_BAD_DATA', `--init-embeddings ${path}: no vectors found`);
  const convention: TokenConvention = spm / entries >= 0.05 ? 'sentencepiece' : wp / entries >= 0.05 ? 'wordpiece' : 'plain';
  return { dim, entries, vectors, convention };
}

/** Reads a table, keeping only the rows `wanted` accepts (all when omitted). */
export async function readEmbeddingTable(path: string, opts: { vocab?: string; wanted?: (k: string) => boolean } = {}): Promise<EmbeddingTable> {
  if (!existsSync(path)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `--init-embeddings: ${path} not found`);
  const wanted = opts.wanted ?? (() => true);
  return path.endsWith('.safetensors') ? readSafetensorsTable(path, opts.vocab, wanted) : readTextTable(path, wanted);
}

// ---- mapping and assignment -------------------------------------------------------------------

/** Dictionary ids that can receive a pretrained row: not <pad>, not madeupword padding. */
function assignable(dict: Dictionary): number[] {
  const ids: number[] = [];
  for (let i = 0; i < dict.size; i++) if (i !== dict.padIndex && !/^madeupword\d{4}$/.test(dict.symbols[i]!)) ids.push(i);
  return ids;
}

function dictConvention(dict: Dictionary): TokenConvention {
  return detectConvention(dict.symbols.slice(dict.nspecial));
}

/** Dictionary id -> pretrained row, for the ids whose token (or a variant) is in the table. */
export function mapOntoDictionary(table: EmbeddingTable, dict: Dictionary): { rows: Map<number, Float32Array>; total: number; missing: string[] } {
  const conv = dictConvention(dict);
  const rows = new Map<number, Float32Array>();
  const missing: string[] = [];
  const ids = assignable(dict);
  for (const i of ids) {
    const key = candidateKeys(dict.symbols[i]!, conv, table.convention).find((k) => table.vectors.has(k));
    if (key === undefined) missing.push(dict.symbols[i]!);
    else rows.set(i, table.vectors.get(key)!);
  }
  return { rows, total: ids.length, missing };
}

export interface EmbeddingInitReport {
  /** Canonical parameter name -> coverage. */
  tables: { name: string; sharedWith: string[]; found: number; total: number }[];
  frozen: string[];
}

/**
 * Applies --init-embeddings and --freeze-embeddings to a freshly built model. `dicts` gives the
 * dictionary of each side (encoder: source, decoder: target).
 */
export async function applyEmbeddingOptions(params: ParamStore, opts: EmbeddingInitOptions, dicts: { src: Dictionary; tgt: Dictionary }): Promise<EmbeddingInitReport> {
  const report: EmbeddingInitReport = { tables: [], frozen: [] };
  if (!opts.initEmbeddings && !opts.freezeEmbeddings) return report;
  const log = getLogger();
  // canonical name -> the names that point at it, and its dictionary
  const aliases = params.aliases();
  const targets = new Map<string, { names: string[]; dict: Dictionary }>();
  for (const name of EMBEDDING_PARAMS) {
    if (!params.has(name)) continue;
    const canonical = aliases[name] ?? name;
    const t = targets.get(canonical);
    if (t) t.names.push(name);
    else targets.set(canonical, { names: [name], dict: name.startsWith('encoder.') ? dicts.src : dicts.tgt });
  }
  if (targets.size === 0) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--init-embeddings/--freeze-embeddings: the model has no token embedding parameter (${EMBEDDING_PARAMS.join(', ')})`);
  }

  if (opts.initEmbeddings) {
    const path = opts.initEmbeddings;
    const want = new Set<string>();
    for (const { dict } of targets.values()) {
      const ids = assignable(dict);
      for (const conv of ['sentencepiece', 'wordpiece', 'plain'] as const) {
        for (const i of ids) for (const k of candidateKeys(dict.symbols[i]!, dictConvention(dict), conv)) want.add(k);
      }
    }
    const table = await readEmbeddingTable(path, { vocab: opts.initEmbeddingsVocab, wanted: (k) => want.has(k) });
    for (const [canonical, { names, dict }] of targets) {
      const v = params.get(canonical);
      const [rowsN, dim] = v.shape as [number, number];
      if (dim !== table.dim) {
        throw new DifformerError(
          'DIFFORMER_BAD_OPTION',
          `--init-embeddings ${path} has ${table.dim}-dimensional vectors, but the model's ${canonical} is ${dim}-dimensional: set the embedding dimension to ${table.dim} (--latent-dim for difformer/diff_lm, --encoder-embed-dim/--decoder-embed-dim for transformer)`,
        );
      }
      if (rowsN !== dict.size) throw new Error(`${canonical} has ${rowsN} rows for a dictionary of ${dict.size} types`);
      const { rows, total, missing } = mapOntoDictionary(table, dict);
      const values = Float32Array.from(v.dataSync() as Float32Array);
      for (const [i, row] of rows) values.set(row, i * dim);
      const t = tf.tensor2d(values, [rowsN, dim]);
      try {
        params.assign({ [canonical]: t }, { strict: false });
      } finally {
        t.dispose();
      }
      const pct = (100 * rows.size) / Math.max(1, total);
      log.info(
        { file: path, param: canonical, sharedWith: names.filter((x) => x !== canonical), found: rows.size, total, tableEntries: table.entries, tableConvention: table.convention, dictConvention: dictConvention(dict), missingExamples: missing.slice(0, 10) },
        `--init-embeddings: found ${rows.size} of ${total} dictionary types (${pct.toFixed(1)}%) in ${path} (${table.entries} x ${table.dim}, ${table.convention} tokens) for ${names.join(' = ')}`,
      );
      report.tables.push({ name: canonical, sharedWith: names.filter((x) => x !== canonical), found: rows.size, total });
    }
  }

  if (opts.freezeEmbeddings) {
    for (const canonical of targets.keys()) {
      params.setTrainable(canonical, false);
      report.frozen.push(canonical);
    }
    const tied = Object.entries(aliases).filter(([, c]) => targets.has(c)).map(([a]) => a);
    log.info({ frozen: report.frozen, tied }, `--freeze-embeddings: ${report.frozen.join(', ')} not trained${tied.length ? ` (also ${tied.join(', ')}, tied to them)` : ''}`);
  }
  return report;
}
