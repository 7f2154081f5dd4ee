/**
 * Writes that never leave a half file under the final name: a temporary name in the same folder,
 * then a rename (atomic on one file system). A failure removes the temporary file and names the
 * destination, so what an earlier run wrote there stays whole.
 */
import { accessSync, constants, copyFileSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DifformerError } from './errors.js';

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
}

/** Moves a finished temporary file into place; a folder in the way is one clear error. */
export function commitTemp(tmp: string, path: string): void {
  try {
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) throw new Error('is a directory');
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `cannot write ${path}: ${(e as Error).message}`);
  }
}

/** Fails now if `path` could not be written later: its folder is made and must take files. */
export function checkWritableFile(path: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    accessSync(dirname(path), constants.W_OK);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) throw new Error('is a directory');
  } catch (e) {
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `cannot write ${path}: ${(e as Error).message}`);
  }
}

export function writeFileAtomic(path: string, text: string): void {
  atomically(path, (tmp) => writeFileSync(tmp, text));
}

export function copyFileAtomic(from: string, to: string): void {
  atomically(to, (tmp) => copyFileSync(from, tmp));
}

/** Runs `write` on a temporary name beside `path`, then moves it into place. */
function atomically(path: string, write: (tmp: string) => void): void {
  const tmp = tempPathFor(path);
  try {
    write(tmp);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `cannot write ${path}: ${(e as Error).message}`);
  }
  commitTemp(tmp, path);
}
