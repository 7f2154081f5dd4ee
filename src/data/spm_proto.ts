/**
 * Minimal protobuf (proto2 wire format) writer and reader for SentencePiece's `ModelProto`
 * (google/sentencepiece src/sentencepiece_model.proto): the `.model` file that `spm_train`
 * writes and `spm_encode` / sentencepiece-js load.
 *
 * Only the fields this toolkit writes or needs to inspect are modelled (pieces, the common
 * TrainerSpec fields, NormalizerSpec); unknown fields are skipped on read and therefore not
 * preserved. Field numbers below are those of sentencepiece_model.proto.
 */
import { DifformerError } from '../errors.js';

/** ModelProto.SentencePiece.Type */
export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** TrainerSpec.ModelType */
export enum ModelType {
  UNIGRAM = 1,
  BPE = 2,
  WORD = 3,
  CHAR = 4,
}

export interface SpmPiece {
  piece: string;
  score: number;
  type: PieceType;
}

/** The TrainerSpec fields we model; every one is optional as in proto2. */
export interface TrainerSpec {
  input?: string[];
  modelPrefix?: string;
  modelType?: ModelType;
  vocabSize?: number;
  selfTestSampleSize?: number;
  inputFormat?: string;
  characterCoverage?: number;
  inputSentenceSize?: number;
  seedSentencepieceSize?: number;
  shrinkingFactor?: number;
  numThreads?: number;
  numSubIterations?: number;
  maxSentenceLength?: number;
  shuffleInputSentence?: boolean;
  maxSentencepieceLength?: number;
  splitByUnicodeScript?: boolean;
  splitByWhitespace?: boolean;
  splitByNumber?: boolean;
  treatWhitespaceAsSuffix?: boolean;
  splitDigits?: boolean;
  allowWhitespaceOnlyPieces?: boolean;
  vocabularyOutputPieceScore?: boolean;
  hardVocabLimit?: boolean;
  useAllVocab?: boolean;
  byteFallback?: boolean;
  unkId?: number;
  bosId?: number;
  eosId?: number;
  padId?: number;
  unkSurface?: string;
  unkPiece?: string;
  bosPiece?: string;
  eosPiece?: string;
  padPiece?: string;
  trainExtremelyLargeCorpus?: boolean;
}

export interface NormalizerSpec {
  name?: string;
  precompiledCharsmap?: Uint8Array;
  addDummyPrefix?: boolean;
  removeExtraWhitespaces?: boolean;
  escapeWhitespaces?: boolean;
}

export interface ModelProto {
  pieces: SpmPiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
}

type Kind = 'string' | 'strings' | 'bytes' | 'int' | 'bool' | 'float';
type FieldTable<T> = ReadonlyArray<readonly [keyof T & string, number, Kind]>;

// Field numbers from sentencepiece_model.proto, in ascending order (serialisation order).
const TRAINER_FIELDS: FieldTable<TrainerSpec> = [
  ['input', 1, 'strings'], ['modelPrefix', 2, 'string'], ['modelType', 3, 'int'],
  ['vocabSize', 4, 'int'], ['selfTestSampleSize', 6, 'int'], ['inputFormat', 7, 'string'],
  ['characterCoverage', 10, 'float'], ['inputSentenceSize', 11, 'int'],
  ['seedSentencepieceSize', 14, 'int'], ['shrinkingFactor', 15, 'float'],
  ['numThreads', 16, 'int'], ['numSubIterations', 17, 'int'], ['maxSentenceLength', 18, 'int'],
  ['shuffleInputSentence', 19, 'bool'], ['maxSentencepieceLength', 20, 'int'],
  ['splitByUnicodeScript', 21, 'bool'], ['splitByWhitespace', 22, 'bool'],
  ['splitByNumber', 23, 'bool'], ['treatWhitespaceAsSuffix', 24, 'bool'],
  ['splitDigits', 25, 'bool'], ['allowWhitespaceOnlyPieces', 26, 'bool'],
  ['vocabularyOutputPieceScore', 32, 'bool'], ['hardVocabLimit', 33, 'bool'],
  ['useAllVocab', 34, 'bool'], ['byteFallback', 35, 'bool'], ['unkId', 40, 'int'],
  ['bosId', 41, 'int'], ['eosId', 42, 'int'], ['padId', 43, 'int'], ['unkSurface', 44, 'string'],
  ['unkPiece', 45, 'string'], ['bosPiece', 46, 'string'], ['eosPiece', 47, 'string'],
  ['padPiece', 48, 'string'], ['trainExtremelyLargeCorpus', 49, 'bool'],
];

const NORMALIZER_FIELDS: FieldTable<NormalizerSpec> = [
  ['name', 1, 'string'], ['precompiledCharsmap', 2, 'bytes'], ['addDummyPrefix', 3, 'bool'],
  ['removeExtraWhitespaces', 4, 'bool'], ['escapeWhitespaces', 5, 'bool'],
];

// ---------------------------------------------------------------- writer

class Writer {
  private buf = new Uint8Array(1 << 16);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Varint of a (possibly negative) 32/53-bit integer; negatives take 10 bytes as in protobuf. */
  varint(value: number): void {
    this.reserve(10);
    let lo: number;
    let hi: number;
    if (value >= 0) {
      lo = value % 0x100000000;
      hi = Math.floor(value / 0x100000000);
    } else {
      // Two's complement over 64 bits (int32 fields are sign-extended).
      lo = value >>> 0;
      hi = 0xffffffff;
    }
    while (hi > 0 || lo > 0x7f) {
      this.buf[this.len++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | ((hi & 0x7f) << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.len++] = lo;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    this.reserve(4);
    new DataView(this.buf.buffer).setFloat32(this.len, value, true);
    this.len += 4;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const utf8 = new TextEncoder();

function writeFields<T extends object>(w: Writer, obj: T, table: FieldTable<T>): void {
  for (const [key, field, kind] of table) {
    const v = (obj as Record<string, unknown>)[key];
    if (v === undefined) continue;
    switch (kind) {
      case 'string': w.bytes(field, utf8.encode(v as string)); break;
      case 'strings': for (const s of v as string[]) w.bytes(field, utf8.encode(s)); break;
      case 'bytes': w.bytes(field, v as Uint8Array); break;
      case 'int': w.tag(field, 0); w.varint(v as number); break;
      case 'bool': w.tag(field, 0); w.varint(v ? 1 : 0); break;
      case 'float': w.float(field, v as number); break;
    }
  }
}

function subMessage(write: (w: Writer) => void): Uint8Array {
  const w = new Writer();
  write(w);
  return w.finish();
}

/** Serialises a ModelProto (pieces, trainer_spec, normalizer_spec) to protobuf bytes. */
export function encodeModelProto(model: ModelProto): Uint8Array {
  const w = new Writer();
  for (const p of model.pieces) {
    w.bytes(1, subMessage((pw) => {
      pw.bytes(1, utf8.encode(p.piece));
      pw.float(2, p.score);
      // type defaults to NORMAL; spm_train omits it then, and so do we.
      if (p.type !== PieceType.NORMAL) { pw.tag(3, 0); pw.varint(p.type); }
    }));
  }
  w.bytes(2, subMessage((tw) => writeFields(tw, model.trainerSpec, TRAINER_FIELDS)));
  w.bytes(3, subMessage((nw) => writeFields(nw, model.normalizerSpec, NORMALIZER_FIELDS)));
  return w.finish();
}

// ---------------------------------------------------------------- reader

function bad(msg: string): DifformerError {
  return new DifformerError('DIFFORMER_BAD_DATA', `not a SentencePiece model: ${msg}`);
}

type Raw = { wire: number; num: number; lo: number; bytes?: Uint8Array };

/** Splits one message into its fields (field number -> raw values in order). */
function parseFields(buf: Uint8Array): Map<number, Raw[]> {
  const out = new Map<number, Raw[]>();
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const varint = (): { num: number; lo: number } => {
    let lo = 0;
    let num = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) throw bad('truncated varint');
      const b = buf[pos++]!;
      if (i < 5) lo |= (b & 0x7f) << (7 * i);
      num += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return { num, lo };
    }
    throw bad('overlong varint');
  };
  while (pos < buf.length) {
    const key = varint().num;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) throw bad('field number 0');
    let raw: Raw;
    if (wire === 0) {
      raw = { wire, ...varint() };
    } else if (wire === 2) {
      const n = varint().num;
      if (pos + n > buf.length) throw bad('truncated field');
      raw = { wire, num: n, lo: 0, bytes: buf.subarray(pos, pos + n) };
      pos += n;
    } else if (wire === 5) {
      if (pos + 4 > buf.length) throw bad('truncated fixed32');
      raw = { wire, num: view.getFloat32(pos, true), lo: view.getUint32(pos, true) };
      pos += 4;
    } else if (wire === 1) {
      if (pos + 8 > buf.length) throw bad('truncated fixed64');
      raw = { wire, num: view.getFloat64(pos, true), lo: 0 };
      pos += 8;
    } else {
      throw bad(`unsupported wire type ${wire}`);
    }
    let list = out.get(field);
    if (!list) out.set(field, (list = []));
    list.push(raw);
  }
  return out;
}

const utf8d = new TextDecoder('utf-8', { fatal: true });

function str(raw: Raw): string {
  if (!raw.bytes) throw bad('expected a string field');
  try {
    return utf8d.decode(raw.bytes);
  } catch {
    throw bad('string field is not valid UTF-8');
  }
}

function readFields<T extends object>(buf: Uint8Array, table: FieldTable<T>): T {
  const fields = parseFields(buf);
  const obj: Record<string, unknown> = {};
  for (const [key, field, kind] of table) {
    const vals = fields.get(field);
    if (!vals || vals.length === 0) continue;
    const last = vals[vals.length - 1]!; // proto2: last value wins for optional fields
    switch (kind) {
      case 'string': obj[key] = str(last); break;
      case 'strings': obj[key] = vals.map(str); break;
      case 'bytes': obj[key] = last.bytes ?? new Uint8Array(0); break;
      // int32 fields are sign-extended; uint64 ones (input_sentence_size) stay below 2^53.
      case 'int': obj[key] = last.num >= 2 ** 63 ? last.lo | 0 : last.num; break;
      case 'bool': obj[key] = last.num !== 0; break;
      case 'float': obj[key] = last.num; break;
    }
  }
  return obj as T;
}

/** Parses `.model` bytes. Throws DIFFORMER_BAD_DATA when they are not a plausible ModelProto. */
export function decodeModelProto(buf: Uint8Array): ModelProto {
  const fields = parseFields(buf);
  const pieces: SpmPiece[] = [];
  for (const raw of fields.get(1) ?? []) {
    if (!raw.bytes) throw bad('piece is not a message');
    const pf = parseFields(raw.bytes);
    const p = pf.get(1)?.at(-1);
    if (!p) throw bad(`piece #${pieces.length} has no text`);
    const score = pf.get(2)?.at(-1);
    const type = pf.get(3)?.at(-1)?.num ?? PieceType.NORMAL;
    if (type < 1 || type > 6) throw bad(`piece #${pieces.length} has unknown type ${type}`);
    pieces.push({ piece: str(p), score: score && score.wire === 5 ? score.num : 0, type });
  }
  if (pieces.length === 0) throw bad('it has no pieces');
  const ts = fields.get(2)?.at(-1)?.bytes;
  const ns = fields.get(3)?.at(-1)?.bytes;
  return {
    pieces,
    trainerSpec: ts ? readFields(ts, TRAINER_FIELDS) : {},
    normalizerSpec: ns ? readFields(ns, NORMALIZER_FIELDS) : {},
  };
}
