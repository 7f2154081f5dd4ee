/**
 * fairseq's mmap indexed dataset (fairseq/data/indexed_dataset.py, MMapIndexedDataset, v0.10.2),
 * so fairseq can read our data-bins and we can read fairseq's:
 *   .bin  all sequences concatenated, uint16 when the vocabulary has < 65500 types, else int32
 *   .idx  "MMIDIDX\0\0" | u64 version = 1 | u8 dtype code | u64 count | i32 sizes[count] |
 *         i64 byte offsets[count]            (little-endian; no doc_idx in v0.10.2)
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { DifformerError } from '../errors.js';

const MAGIC = Buffer.from('MMIDIDX\x00\x00', 'latin1');

/** fairseq's dtype codes (indexed_dataset.dtypes). */
const DTYPE_CODES = { uint8: 1, int8: 2, int16: 3, int32: 4, int64: 5, float64: 6, float32: 7, uint16: 8 } as const;
type DType = 'uint16' | 'int32';

export function bestDtype(vocabSize: number): DType {
  return vocabSize < 65500 ? 'uint16' : 'int32';
}

/** Streams sequences into PATH.bin and writes PATH.idx on finish. */
export class IndexedDatasetBuilder {
  private readonly fd: number;
  private readonly sizes: number[] = [];
  private readonly dtype: DType;

  constructor(
    private readonly prefix: string,
    vocabSize: number,
  ) {
    this.dtype = bestDtype(vocabSize);
    this.fd = openSync(`${prefix}.bin`, 'w');
  }

  add(ids: ArrayLike<number>): void {
    const arr = this.dtype === 'uint16' ? Uint16Array.from(ids) : Int32Array.from(ids);
    writeSync(this.fd, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
    this.sizes.push(arr.length);
  }

  finish(): void {
    closeSync(this.fd);
    const n = this.sizes.length;
    const elem = this.dtype === 'uint16' ? 2 : 4;
    const header = Buffer.alloc(9 + 8 + 1 + 8);
    MAGIC.copy(header, 0);
    header.writeBigUInt64LE(1n, 9);
    header.writeUInt8(DTYPE_CODES[this.dtype], 17);
    header.writeBigUInt64LE(BigInt(n), 18);
    const sizes = new Int32Array(this.sizes);
    const pointers = new BigInt64Array(n);
    let off = 0n;
    for (let i = 0; i < n; i++) {
      pointers[i] = off;
      off += BigInt(this.sizes[i]! * elem);
    }
    const fd = openSync(`${this.prefix}.idx`, 'w');
    writeSync(fd, header);
    writeSync(fd, new Uint8Array(sizes.buffer));
    writeSync(fd, new Uint8Array(pointers.buffer));
    closeSync(fd);
  }
}

/** A sequence of token-id arrays (an indexed dataset on disk, or sentences in memory). */
export interface TokenDataset {
  readonly sizes: Int32Array;
  readonly length: number;
  get(i: number): Int32Array;
}

/** Sentences already encoded in memory (interactive generation, distillation). */
export class InMemoryDataset implements TokenDataset {
  readonly sizes: Int32Array;
  constructor(private readonly items: Int32Array[]) {
    this.sizes = Int32Array.from(items, (x) => x.length);
  }
  get length(): number {
    return this.items.length;
  }
  get(i: number): Int32Array {
    return this.items[i]!;
  }
}

/** Reads a whole mmap dataset into memory (our corpora are small enough; ids as Int32Array views). */
export class IndexedDataset implements TokenDataset {
  readonly sizes: Int32Array;
  private readonly offsets: Float64Array;
  private readonly data: Uint16Array | Int32Array;

  constructor(readonly prefix: string) {
    let idx: Buffer;
    let bin: Buffer;
    try {
      idx = readFileSync(`${prefix}.idx`);
      bin = readFileSync(`${prefix}.bin`);
    } catch (e) {
      throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `cannot read dataset ${prefix}.{idx,bin}: ${(e as Error).message}`);
    }
    if (idx.length < 26 || !idx.subarray(0, 9).equals(MAGIC)) {
      throw new DifformerError('DIFFORMER_BAD_DATA', `${prefix}.idx is not a fairseq mmap index (bad magic)`);
    }
    const version = idx.readBigUInt64LE(9);
    if (version !== 1n) throw new DifformerError('DIFFORMER_BAD_DATA', `${prefix}.idx: unsupported version ${version}`);
    const code = idx.readUInt8(17);
    const n = Number(idx.readBigUInt64LE(18));
    if (idx.length < 26 + n * 12) throw new DifformerError('DIFFORMER_BAD_DATA', `${prefix}.idx is truncated`);
    this.sizes = new Int32Array(idx.buffer.slice(idx.byteOffset + 26, idx.byteOffset + 26 + n * 4));
    const ptrs = new BigInt64Array(idx.buffer.slice(idx.byteOffset + 26 + n * 4, idx.byteOffset + 26 + n * 12));
    this.offsets = Float64Array.from(ptrs, (p) => Number(p));
    const ab = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
    if (code === DTYPE_CODES.uint16) this.data = new Uint16Array(ab);
    else if (code === DTYPE_CODES.int32) this.data = new Int32Array(ab);
    else throw new DifformerError('DIFFORMER_BAD_DATA', `${prefix}.idx: unsupported dtype code ${code}`);
  }

  get length(): number {
    return this.sizes.length;
  }

  /** Token ids of item i (a copy, as Int32Array). */
  get(i: number): Int32Array {
    const start = this.offsets[i]! / this.data.BYTES_PER_ELEMENT;
    return Int32Array.from(this.data.subarray(start, start + this.sizes[i]!));
  }
}
