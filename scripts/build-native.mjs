#!/usr/bin/env node
/**
 * Builds the optional native CPU kernels (native/: a C N-API addon over OpenBLAS) with npm's
 * bundled node-gyp, offline, against the installed Node headers (--nodedir, default /usr when
 * /usr/include/node/node_api.h exists). Never fails an install: on any problem it prints ONE line
 * saying the native path is unavailable and why, and exits 0; the toolkit then runs on plain wasm.
 *
 *   node scripts/build-native.mjs [--verbose]
 *
 * Needs a C compiler, make, python3 (node-gyp), and OpenBLAS with cblas.h (Debian/Ubuntu:
 * apt-get install libopenblas-dev). DIFFORMER_NATIVE=0 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NATIVE = join(ROOT, 'native');
const OUT = join(NATIVE, 'build', 'Release', 'difformer_native.node');
const verbose = process.argv.includes('--verbose');

function unavailable(why) {
  console.log(`difformer: native CPU kernels unavailable (${why}); the toolkit runs on plain wasm`);
  process.exit(0);
}

/** npm's own node-gyp (no download, no extra dependency), else one on PATH. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  const npmCli = process.env.npm_execpath;
  if (npmCli) candidates.push(join(dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push('/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js', '/usr/share/nodejs/node-gyp/bin/node-gyp.js');
  return candidates.find((c) => existsSync(c));
}

/** cblas.h in the compiler's default include paths (multiarch included). */
function hasCblasHeader() {
  const dirs = ['/usr/include', '/usr/local/include'];
  for (const d of ['/usr/include', '/usr/local/include']) {
    try {
      for (const e of readdirSync(d)) if (e.endsWith('-linux-gnu')) dirs.push(join(d, e));
    } catch {
      /* missing dir */
    }
  }
  return dirs.some((d) => existsSync(join(d, 'cblas.h')) || existsSync(join(d, 'openblas', 'cblas.h')));
}

if (process.env.DIFFORMER_NATIVE === '0') unavailable('DIFFORMER_NATIVE=0: build skipped');
if (process.platform !== 'linux') unavailable(`built only on Linux so far, this is ${process.platform}`);
const gyp = findNodeGyp();
if (gyp === undefined) unavailable('node-gyp not found (it ships with npm)');
if (!hasCblasHeader()) unavailable('no cblas.h: install OpenBLAS headers, e.g. apt-get install libopenblas-dev');
const cc = spawnSync(process.env.CC ?? 'cc', ['--version'], { encoding: 'utf8' });
if (cc.status !== 0) unavailable('no C compiler (cc) found');

// Offline: build against installed headers instead of downloading them.
const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
const args = [gyp, 'rebuild', '--release', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const r = spawnSync(process.execPath, args, { cwd: NATIVE, encoding: 'utf8', env: { ...process.env } });
if (verbose || r.status !== 0) {
  if (verbose) process.stdout.write(r.stdout + r.stderr);
}
if (r.status !== 0 || !existsSync(OUT)) {
  const lines = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim());
  const err = lines.find((l) => /error|cannot find|not found/i.test(l) && !/^gyp info/.test(l)) ?? `node-gyp exited with ${r.status}`;
  unavailable(`build failed: ${err.slice(0, 200)}`);
}
// Load it once here so a broken link (e.g. libopenblas missing at run time) shows now.
try {
  const { createRequire } = await import('node:module');
  const addon = createRequire(import.meta.url)(OUT);
  const info = addon.info();
  console.log(`difformer: native CPU kernels built (${OUT.slice(ROOT.length + 1)}; OpenBLAS ${info.corename}, ${info.threads} threads)`);
} catch (e) {
  unavailable(`built but does not load: ${String(e instanceof Error ? e.message : e).split('\n')[0]}`);
}
