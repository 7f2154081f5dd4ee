/**
 * examples/lib/decode_score.sh (the table scripts' decoding step): a finished decoding is reused
 * when the same call comes again with unchanged checkpoints, and redone when a checkpoint
 * changes. difformer-generate and -score are stubbed by a shell function standing in for node.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ROOT, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const script = `
set -euo pipefail
node() { # stub: generate prints one hypothesis and counts its calls; score prints a sacreBLEU line
  case $1 in
  bin/difformer-generate.js) echo call >> "$TMP/calls"; printf 'H-0\\t-1.0\\thello\\nGenerate valid with beam=1: BLEU4 = 12.34, 1/1/1/1\\n'; echo '{"sentencesPerSecond":5}' >&2 ;;
  bin/difformer-score.js) echo 'BLEU|nrefs:1 = 56.78 x' ;;
  esac
}
. examples/lib/decode_score.sh
decode_score "$TMP/row" DATA "$TMP/a.ckpt:$TMP/b.ckpt" valid 1 "$TMP/ref" --beam 1
`;

function run(extraEnv: Record<string, string> = {}): string {
  const r = spawnSync('bash', ['-c', script], { cwd: ROOT, env: { ...process.env, TMP: tmp.path, ...extraEnv }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('decode_score reuses a finished decoding of the same call and checkpoints, and redoes it when one changes', () => {
  for (const f of ['a.ckpt', 'b.ckpt', 'ref']) writeFileSync(join(tmp.path, f), 'x\n');
  const calls = () => readFileSync(join(tmp.path, 'calls'), 'utf8').trim().split('\n').length;
  assert.equal(run(), '56.78 12.34 5.00');
  assert.equal(run(), '56.78 12.34 5.00');
  assert.equal(calls(), 1, 'second call reused the output');
  utimesSync(join(tmp.path, 'b.ckpt'), new Date(), new Date(Date.now() + 5000)); // the reranker was retrained
  run();
  assert.equal(calls(), 2);
  run({ DECODE_REUSE: '0' });
  assert.equal(calls(), 3);
});
