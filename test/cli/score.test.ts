import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FIXTURES, runCli, tempDir } from '../helpers.js';
import { writeSafetensors } from '../../src/train/safetensors.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const REF = join(FIXTURES, 'gettext', 'test.en');
const SRC = join(FIXTURES, 'gettext', 'test.de');

test('a perfect system scores BLEU 100 from stdin, in fairseq-score format', () => {
  const r = runCli('difformer-score', ['--ref', REF], { input: readRef() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^BLEU4 = 100\.00, 100\.0\/100\.0\/100\.0\/100\.0 \(BP=1\.000, ratio=1\.000, syslen=\d+, reflen=\d+\)\n$/);
});

test('copying the German source scores low but above zero; sacreBLEU prints its signature', () => {
  const fs = runCli('difformer-score', ['--sys', SRC, '--ref', REF]);
  assert.equal(fs.code, 0, fs.stderr);
  const bleu = Number(/BLEU4 = ([\d.]+)/.exec(fs.stdout)![1]);
  assert.ok(bleu > 0 && bleu < 20, fs.stdout);
  const sb = runCli('difformer-score', ['--sys', SRC, '--ref', REF, '--metric', 'sacrebleu']);
  assert.equal(sb.code, 0, sb.stderr);
  assert.match(sb.stdout, /^BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:[\d.]+ = [\d.]+ /);
  const intl = runCli('difformer-score', ['--sys', SRC, '--ref', REF, '--metric', 'sacrebleu', '--tokenize', 'intl', '--ignore-case']);
  assert.match(intl.stdout, /case:lc\|eff:no\|tok:intl/);
});

test('ROUGE-1/2/L lines, and the stemmer option', () => {
  const sys = join(tmp.path, 'sum.sys');
  const ref = join(tmp.path, 'sum.ref');
  writeFileSync(sys, 'the cats are running\n');
  writeFileSync(ref, 'the cat runs\n');
  const plain = runCli('difformer-score', ['--sys', sys, '--ref', ref, '--metric', 'rouge']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /ROUGE-1 P\/R\/F = 25\.00\/33\.33\/28\.57/);
  assert.match(plain.stdout, /ROUGE-2 /);
  assert.match(plain.stdout, /ROUGE-L /);
  const stem = runCli('difformer-score', ['--sys', sys, '--ref', ref, '--metric', 'rouge', '--stemmer']);
  // with Porter stemming: the, cat, are, run vs the, cat, run -> 3 matches
  assert.match(stem.stdout, /ROUGE-1 P\/R\/F = 75\.00\/100\.00\/85\.71/);
});

test('--sentence-bleu prints one line per sentence, numbered from 0', () => {
  const r = runCli('difformer-score', ['--sys', SRC, '--ref', REF, '--sentence-bleu']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, readRef().trim().split('\n').length);
  assert.match(lines[0]!, /^0 BLEU4 = /);
});

test('line-count mismatch and missing files are one-line errors', () => {
  const r = runCli('difformer-score', ['--ref', REF], { input: 'only one line\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^difformer-score: error: system output and references differ in length: stdin has 1 lines, .*test\.en has 80\n$/);
  const m = runCli('difformer-score', ['--sys', SRC, '--ref', join(tmp.path, 'missing.txt')]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /error: file not found: .*missing\.txt/);
  const noref = runCli('difformer-score', ['--sys', SRC]);
  assert.match(noref.stderr, /--ref is required/);
});

function readRef(): string {
  return readFileSync(REF, 'utf8');
}

test('--anisotropy --path: Eq. 5 and the self-rounding rate of a checkpoint\'s table, specials left out', () => {
  // rows: 4 specials (ignored), e1, e2, 2(e1 + e2): cosines 0, 1/sqrt2, 1/sqrt2 -> anisotropy 0.4714;
  // only the third row wins its own dot-product argmax -> self-rounding 1/3
  const data = Float32Array.from([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1, 0, 0, 1, 2, 2]); // small specials still compete
  const symbols = ['<s>', '<pad>', '</s>', '<unk>', 'a', 'b', 'c'];
  const meta = { dictionaries: { src: { size: 7, hash: 'x', symbols }, tgt: { size: 7, hash: 'x', symbols } } };
  const path = join(tmp.path, 'table.safetensors');
  writeSafetensors(path, new Map([['model.encoder.embed_tokens.weight', { dtype: 'F32' as const, shape: [7, 2], data }]]), { difformer: JSON.stringify(meta) });
  const r = runCli('difformer-score', ['--anisotropy', '--path', path]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Anisotropy = 0\.4714 \(encoder\.embed_tokens\.weight: 3 tokens x 2 dims\)\nSelf-rounding = 0\.3333 /);
});
