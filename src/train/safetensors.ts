/**
 * The safetensors file format (huggingface/safetensors): u64 little-endian header length N,
 * N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {k: string}},
 * then the raw little-endian tensor bytes. Writes go to a temporary name in the same folder
 * and are renamed into place, so a crash never leaves a half file.
 */
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { commitTemp, tempPathFor } from '../atomic.js';
import { DifformerError } from '../errors.js';

export type DType = 'F32' | 'I32' | 'F64';

export interface NamedArray {
  dtype: DType;
  shape: number[];
  data: Float32Array | Int32Array | Float64Array;
}

/** Writes tensors and string metadata atomically to `path`. */
export function writeSafetensors(path: string, tensors: Map<string, NamedArray>, metadata: Record<string, string>): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`tensor ${name}: shape ${JSON.stringify(t.shape)} does not match ${t.data.length} values`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // pad the header with spaces so the data starts 8-byte aligned (allowed by the format)
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const name of names) {
      const d = tensors.get(name)!.data;
      writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `cannot write ${path}: ${(e as Error).message}`);
  }
  closeSync(fd);
  commitTemp(tmp, path);
}

export function readSafetensors(path: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `cannot read checkpoint ${path}: ${(e as Error).message}`);
  }
  const bad = (why: string) => new DifformerError('DIFFORMER_BAD_CHECKPOINT', `${path} is not a valid safetensors checkpoint: ${why}`);
  if (buf.length < 8) throw bad('file too short');
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw bad('header length exceeds file size');
  let header: Record<string, { dtype: DType; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as typeof header;
  } catch {
    throw bad('header is not JSON');
  }
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, NamedArray>();
  const base = 8 + n;
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = info as { dtype: DType; shape: number[]; data_offsets: [number, number] };
    const [b, e] = data_offsets;
    if (base + e > buf.length) throw bad(`tensor ${name} runs past the end of the file`);
    const bytes = buf.buffer.slice(buf.byteOffset + base + b, buf.byteOffset + base + e);
    const data = dtype === 'F32' ? new Float32Array(bytes) : dtype === 'I32' ? new Int32Array(bytes) : dtype === 'F64' ? new Float64Array(bytes) : undefined;
    if (!data) throw bad(`tensor ${name} has unsupported dtype ${String(dtype)}`);
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}
