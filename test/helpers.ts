/** Shared test helpers: run the built CLI, make temp dirs, locate fixtures, random data, cpu reference runs. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../src/nn/params.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bin/difformer[-sub].js args` (the compiled program: `npm run build` first). */
export function runCli(bin: string, args: string[], opts: { input?: string | Uint8Array; cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', `${bin}.js`), ...args], {
    cwd: opts.cwd ?? ROOT,
    input: opts.input ?? '',
    encoding: 'utf8',
    env: { ...process.env, DIFFORMER_NO_PROGRESS: '1', ...opts.env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A user error: exit 1, one line on stderr naming the program and the problem, no stack trace. */
export function assertCliError(r: CliResult, bin: string, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.match(r.stderr, new RegExp(`^${bin}: error: `, 'm'));
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace without --debug');
}

export function tempDir(prefix = 'difformer-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A deterministic uniform [0, 1) source for random test data, so failures reproduce. */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.uniform();
}

/** Runs f on tfjs's cpu backend (its reference implementation), then switches back to wasm. */
export async function onCpu<T>(f: () => T): Promise<T> {
  await tf.setBackend('cpu');
  try {
    return f();
  } finally {
    await tf.setBackend('wasm');
  }
}
