import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Dictionary } from '../../src/data/dictionary.js';
import { IndexedDataset } from '../../src/data/indexed_dataset.js';
import { type CliResult, FIXTURES, assertCliError, runCli, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const RAW = join(FIXTURES, 'gettext');

const assertUserError = (r: CliResult, pattern: RegExp): void => assertCliError(r, 'difformer-preprocess', pattern);

test('joined SentencePiece data-bin from raw text, as fairseq-preprocess lays it out', () => {
  const dest = join(tmp.path, 'bin-spm');
  const r = runCli('difformer-preprocess', [
    '--source-lang', 'de', '--target-lang', 'en',
    '--trainpref', join(RAW, 'train'), '--validpref', join(RAW, 'valid'), '--testpref', join(RAW, 'test'),
    '--destdir', dest, '--joined-dictionary', '--spm-vocab-size', '600', '--log-format', 'json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const files = readdirSync(dest).sort();
  for (const f of ['spm.model', 'dict.de.txt', 'dict.en.txt', 'preprocess.log', 'train.de-en.de.bin', 'train.de-en.de.idx', 'train.de-en.en.idx', 'valid.de-en.en.bin', 'test.de-en.de.idx']) {
    assert.ok(files.includes(f), `missing ${f} in ${files.join(' ')}`);
  }
  assert.ok(!files.some((f) => f.startsWith('.preprocess-tmp')), 'temp folder removed');
  const de = readFileSync(join(dest, 'dict.de.txt'), 'utf8');
  assert.equal(de, readFileSync(join(dest, 'dict.en.txt'), 'utf8'), 'joined dictionary written for both languages');
  const dict = Dictionary.fromText(de);
  assert.equal(dict.size % 8, 0);
  const counts = dict.counts.slice(4).filter((c) => c > 0);
  assert.deepEqual(counts, [...counts].sort((a, b) => b - a), 'count order');
  const train = new IndexedDataset(join(dest, 'train.de-en.en'));
  assert.equal(train.length, 600);
  const first = train.get(0);
  assert.equal(first[first.length - 1], dict.eosIndex);
  // the pieces decode back to the raw English line
  const pieces = dict.string(first).split(' ');
  assert.equal(pieces.join('').replace(/\u2581/g, ' ').trim(), readFileSync(join(RAW, 'train.en'), 'utf8').split('\n')[0]!.normalize('NFKC').trim().replace(/\s+/g, ' '));
  const log = readFileSync(join(dest, 'preprocess.log'), 'utf8');
  assert.match(log, /\[de\] Dictionary: \d+ types/);
  assert.match(log, /\[en\] .*train\.en: 600 sents, \d+ tokens, [\d.]+% replaced by <unk>/);
  assert.match(r.stderr, /"msg":"binarized train.de"/);
});

test('pre-tokenized input without SentencePiece; separate dictionaries with thresholds', () => {
  const dest = join(tmp.path, 'bin-plain');
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--destdir', dest, '--thresholdsrc', '2', '--nwordstgt', '100']);
  assert.equal(r.code, 0, r.stderr);
  const en = Dictionary.fromText(readFileSync(join(dest, 'dict.en.txt'), 'utf8'));
  assert.equal(en.size, 104, 'nwords 100 kept, then padded to a multiple of 8');
  const de = Dictionary.fromText(readFileSync(join(dest, 'dict.de.txt'), 'utf8'));
  assert.ok(de.counts.slice(4).every((c, i) => c >= 2 || de.symbols[i + 4]!.startsWith('madeupword')));
  assert.ok(!existsSync(join(dest, 'spm.model')));
  // a second run refuses to overwrite the dictionaries, as fairseq does
  const again = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--destdir', dest]);
  assertUserError(again, /dict\.de\.txt already exists/);
});

test('missing file', () => {
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'nope'), '--destdir', join(tmp.path, 'x1')]);
  assertUserError(r, /file not found: .*nope\.de/);
});

test('parallel files with different line counts name both files and counts', () => {
  const dest = join(tmp.path, 'x2');
  writeFileSync(join(tmp.path, 'mm.de'), 'a\nb\nc\n');
  writeFileSync(join(tmp.path, 'mm.en'), 'a\nb\n');
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(tmp.path, 'mm'), '--destdir', dest]);
  assertUserError(r, /mm\.de has 3 lines, .*mm\.en has 2/);
  assert.ok(!existsSync(join(dest, 'dict.de.txt')), 'nothing written');
});

test('empty corpus', () => {
  writeFileSync(join(tmp.path, 'empty.de'), '');
  writeFileSync(join(tmp.path, 'empty.en'), '');
  assertUserError(runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(tmp.path, 'empty'), '--destdir', join(tmp.path, 'x3')]), /empty corpus/);
  writeFileSync(join(tmp.path, 'blankonly.de'), '\n\n');
  writeFileSync(join(tmp.path, 'blankonly.en'), '\n\n');
  assertUserError(runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(tmp.path, 'blankonly'), '--destdir', join(tmp.path, 'x3b')]), /every line .* is blank/);
});

test('blank lines are counted, reported and kept so ids stay aligned', () => {
  writeFileSync(join(tmp.path, 'blank.de'), 'hallo welt\n\nguten tag\n');
  writeFileSync(join(tmp.path, 'blank.en'), 'hello world\nsomething\ngood day\n');
  const dest = join(tmp.path, 'x4');
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(tmp.path, 'blank'), '--destdir', dest]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 blank line pairs kept as empty sequences/);
  assert.match(readFileSync(join(dest, 'preprocess.log'), 'utf8'), /\[train\] 1 blank line pairs kept/);
  assert.deepEqual([...new IndexedDataset(join(dest, 'train.de-en.de')).sizes], [3, 1, 3]);
});

test('invalid UTF-8 names the file and line', () => {
  writeFileSync(join(tmp.path, 'bad.de'), Buffer.concat([Buffer.from('gut\nschl'), Buffer.from([0xff, 0xfe]), Buffer.from('echt\n')]));
  writeFileSync(join(tmp.path, 'bad.en'), 'good\nbad\n');
  assertUserError(runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(tmp.path, 'bad'), '--destdir', join(tmp.path, 'x5')]), /bad\.de: invalid UTF-8 at line 2/);
});

test('--destdir not writable', () => {
  writeFileSync(join(tmp.path, 'a-file'), 'x');
  assertUserError(runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--destdir', join(tmp.path, 'a-file', 'sub')]), /--destdir .* is not writable/);
});

test('malformed --srcdict fails before anything is written', () => {
  const dict = join(tmp.path, 'bad-dict.txt');
  writeFileSync(dict, 'hallo 3\nwelt\n');
  const dest = join(tmp.path, 'x6');
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--destdir', dest, '--srcdict', dict, '--joined-dictionary']);
  assertUserError(r, /bad-dict\.txt:2: malformed dictionary line 'welt'/);
  assert.deepEqual(readdirSync(dest), [], 'no half data-bin left behind');
});

test('--srcdict reuse gives an identical dictionary (as difformer-distill needs)', () => {
  const src = join(tmp.path, 'bin-plain', 'dict.de.txt');
  const dest = join(tmp.path, 'x7');
  copyFileSync(src, join(tmp.path, 'reuse.txt'));
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'valid'), '--destdir', dest, '--srcdict', join(tmp.path, 'reuse.txt'), '--joined-dictionary']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(dest, 'dict.en.txt'), 'utf8'), readFileSync(src, 'utf8'));
});

test('held-out text into an existing SentencePiece data-bin: its dictionaries and spm.model, or one clear refusal', () => {
  const bin = join(tmp.path, 'bin-heldout');
  cpSync(join(tmp.path, 'bin-spm'), bin, { recursive: true });
  const dicts = ['--srcdict', join(bin, 'dict.de.txt'), '--tgtdict', join(bin, 'dict.en.txt')];
  const args = ['-s', 'de', '-t', 'en', '--testpref', join(RAW, 'test'), '--destdir', bin];
  const before = readFileSync(join(bin, 'dict.de.txt'), 'utf8');
  // without the data-bin's SentencePiece model the words would mostly become <unk>
  assertUserError(runCli('difformer-preprocess', [...args, ...dicts]), /holds a SentencePiece model: encode the new splits with it \(--spm-model .*spm\.model\)/);
  // another dictionary would no longer match the train/valid binaries already there
  assertUserError(runCli('difformer-preprocess', [...args, '--srcdict', join(tmp.path, 'bin-plain', 'dict.de.txt'), '--tgtdict', join(bin, 'dict.en.txt'), '--spm-model', join(bin, 'spm.model')]), /dict\.de\.txt already exists and differs from .*bin-plain/);
  assert.equal(readFileSync(join(bin, 'dict.de.txt'), 'utf8'), before, 'dictionary untouched');
  const ok = runCli('difformer-preprocess', [...args, ...dicts, '--spm-model', join(bin, 'spm.model'), '--log-format', 'json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stderr, /are <unk>/);
  assert.equal(new IndexedDataset(join(bin, 'test.de-en.de')).length, readFileSync(join(RAW, 'test.de'), 'utf8').trimEnd().split('\n').length);
  assert.equal(readFileSync(join(bin, 'dict.de.txt'), 'utf8'), before);
  // a file that is no SentencePiece model is named as the user gave it
  writeFileSync(join(tmp.path, 'junk.model'), 'not a model');
  const junk = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--testpref', join(RAW, 'test'), '--destdir', join(tmp.path, 'x-junk'), ...dicts, '--spm-model', join(tmp.path, 'junk.model')]);
  assertUserError(junk, /junk\.model/);
  assert.doesNotMatch(junk.stderr, /preprocess-tmp/);
});
