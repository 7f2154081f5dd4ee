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
