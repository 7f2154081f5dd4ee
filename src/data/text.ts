/**
 * Reading raw text corpora with user-facing errors: missing or unreadable file, invalid UTF-8
 * (with the line number), parallel files with different line counts. `PREFIX.LANG` may also be
 * given gzipped as `PREFIX.LANG.gz` (fairseq reads only plain text; we accept both).
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { DifformerError } from '../errors.js';

/** Resolves a corpus path, falling back to a `.gz` sibling. */
export function resolveCorpusPath(path: string): string {
  if (existsSync(path)) return path;
  if (existsSync(`${path}.gz`)) return `${path}.gz`;
  throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `file not found: ${path}`);
}

/** The whole file as text; `-` reads standard input (interactive decoding, score --sys -). */
export function readTextFile(path: string): string {
  const real = path === '-' ? 'stdin' : resolveCorpusPath(path);
  let buf: Buffer;
  try {
    if (path === '-') buf = readFileSync(0);
    else {
      if (statSync(real).isDirectory()) throw new Error('is a directory');
      accessSync(real, constants.R_OK);
      buf = readFileSync(real);
      if (real.endsWith('.gz')) buf = gunzipSync(buf);
    }
  } catch (e) {
    throw new DifformerError('DIFFORMER_FILE_UNREADABLE', `cannot read ${real}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new DifformerError('DIFFORMER_INVALID_UTF8', `${real}: invalid UTF-8 at line ${firstBadUtf8Line(buf)}`);
  }
}

function firstBadUtf8Line(buf: Buffer): number {
  const dec = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  let start = 0;
  for (let i = 0; i <= buf.length; i++) {
    if (i === buf.length || buf[i] === 0x0a) {
      try {
        dec.decode(buf.subarray(start, i));
      } catch {
        return line;
      }
      line++;
      start = i + 1;
    }
  }
  return line;
}

/**
 * Lines of a byte stream as they arrive (stdin read in chunks), with readLines' rules: split at
 * LF only, CRLF reads as LF, no extra line after a final newline, and invalid UTF-8 is an error
 * naming the line (readline would put U+FFFD in its place and go on).
 */
export async function* streamLines(stream: AsyncIterable<Uint8Array>, name = 'stdin'): AsyncGenerator<string> {
  // ignoreBOM: each line is decoded on its own, and only the stream's first may drop a BOM (as readTextFile)
  const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let line = 0;
  let pending: Uint8Array[] = []; // the unfinished line, joined once its LF arrives (no rescans of a long line)
  const decode = (parts: Uint8Array[]): string => {
    line++;
    let text: string;
    try {
      text = dec.decode(parts.length === 1 ? parts[0] : Buffer.concat(parts));
    } catch {
      throw new DifformerError('DIFFORMER_INVALID_UTF8', `${name}: invalid UTF-8 at line ${line}`);
    }
    if (line === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
    return text.endsWith('\r') ? text.slice(0, -1) : text;
  };
  for await (const chunk of stream) {
    let from = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, from)) >= 0) {
      pending.push(chunk.subarray(from, nl));
      yield decode(pending);
      pending = [];
      from = nl + 1;
    }
    if (from < chunk.length) pending.push(chunk.subarray(from));
  }
  if (pending.length > 0) yield decode(pending);
}

export interface Corpus {
  path: string;
  lines: string[];
  /** Lines that are empty or whitespace only. */
  blank: number;
}

/** Lines of a text file or `-` (stdin); a final newline makes no extra line, CRLF reads as LF. */
export function readLines(path: string): Corpus {
  const text = readTextFile(path);
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) if (lines[i]!.endsWith('\r')) lines[i] = lines[i]!.slice(0, -1);
  let blank = 0;
  for (const l of lines) if (l.trim() === '') blank++;
  return { path: path === '-' ? 'stdin' : resolveCorpusPath(path), lines, blank };
}

/** Reads two parallel files and checks they pair up line by line and are not empty. */
export function readParallel(srcPath: string, tgtPath: string): { src: Corpus; tgt: Corpus } {
  const src = readLines(srcPath);
  const tgt = readLines(tgtPath);
  if (src.lines.length !== tgt.lines.length) {
    throw new DifformerError(
      'DIFFORMER_LINE_COUNT_MISMATCH',
      `parallel files differ in length: ${src.path} has ${src.lines.length} lines, ${tgt.path} has ${tgt.lines.length}`,
    );
  }
  if (src.lines.length === 0) {
    throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `empty corpus: ${src.path} and ${tgt.path} have no lines`);
  }
  return { src, tgt };
}
