/**
 * difformer-distill end to end on the gettext fixture: a tiny AR teacher trained for a few
 * updates through the CLI distils the training set into a new data-bin with byte-identical
 * dictionaries, untouched valid/test and the same sentence count; an interrupted run (last shard
 * missing) resumes to identical output; settings and dictionary mismatches fail clearly.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Dictionary } from '../../src/data/dictionary.js';
import { IndexedDataset } from '../../src/data/indexed_dataset.js';
import { FIXTURES, runCli, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const BIN = join(tmp.path, 'bin');
const RAW = join(tmp.path, 'raw'); // the gettext fixture with 150 training pairs (decoding is the slow part)
const N = 150;
const TEACHER = join(tmp.path, 'teacher', 'checkpoint_last.safetensors');
const D1 = join(tmp.path, 'distilled');

const distillArgs = (dest: string, extra: string[] = []) => [BIN, '--path', TEACHER, '--destdir', dest, '--beam', '1', '--batch-size', '128', '--max-len-b', '8', '--shard-size', '60', '--log-format', 'json', ...extra];
const same = (a: string, b: string) => readFileSync(a).equals(readFileSync(b));

before(() => {
  mkdirSync(RAW, { recursive: true });
  for (const f of ['train.de', 'train.en', 'valid.de', 'valid.en', 'test.de', 'test.en']) {
    const lines = readFileSync(join(FIXTURES, 'gettext', f), 'utf8').split('\n');
    writeFileSync(join(RAW, f), `${(f.startsWith('train') ? lines.slice(0, N) : lines.slice(0, -1)).join('\n')}\n`);
  }
  const p = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--validpref', join(RAW, 'valid'), '--testpref', join(RAW, 'test'), '--destdir', BIN, '--joined-dictionary', '--spm-vocab-size', '300']);
  assert.equal(p.code, 0, p.stderr);
  const t = runCli('difformer-train', [
    BIN, '--arch', 'transformer_tiny', '--optimizer', 'adam', '--lr', '3e-3', '--max-tokens', '1024', '--max-update', '6',
    '--save-dir', join(tmp.path, 'teacher'), '--no-epoch-checkpoints', '--disable-validation', '--log-format', 'none',
  ]);
  assert.equal(t.code, 0, t.stderr);
});

test('distill: same dictionaries, source and valid/test copied, one distilled target per training sentence', () => {
  const r = runCli('difformer-distill', distillArgs(D1, ['--keep-shards']));
  assert.equal(r.code, 0, r.stderr);
  for (const f of ['dict.de.txt', 'dict.en.txt', 'spm.model', 'train.de-en.de.bin', 'train.de-en.de.idx']) assert.ok(same(join(BIN, f), join(D1, f)), `${f} copied byte for byte`);
  for (const split of ['valid', 'test']) for (const lang of ['de', 'en']) for (const ext of ['bin', 'idx']) assert.ok(same(join(BIN, `${split}.de-en.${lang}.${ext}`), join(D1, `${split}.de-en.${lang}.${ext}`)), `${split}.${lang}.${ext} unchanged`);
  const src = new IndexedDataset(join(BIN, 'train.de-en.de'));
  const orig = new IndexedDataset(join(BIN, 'train.de-en.en'));
  const dist = new IndexedDataset(join(D1, 'train.de-en.en'));
  assert.equal(dist.length, src.length);
  const dict = Dictionary.fromText(readFileSync(join(BIN, 'dict.en.txt'), 'utf8'));
  let changed = 0;
  for (let i = 0; i < dist.length; i++) {
    const ids = dist.get(i);
    assert.equal(ids[ids.length - 1], dict.eosIndex);
    assert.ok(ids.length <= 9, 'at most --max-len-b tokens + EOS');
    if (dict.string(ids) !== dict.string(orig.get(i))) changed++;
  }
  assert.ok(changed > 0, 'the targets are the teacher output, not the references');
  assert.match(dict.string(dist.get(0)), /\u2581/, 'subword pieces kept (no --remove-bpe)');
  // the shard files hold the same text, one line per sentence
  const shards = readdirSync(join(D1, '.distill-shards')).filter((f) => f.startsWith('shard-')).sort();
  assert.deepEqual(shards, ['shard-00000.txt', 'shard-00001.txt', 'shard-00002.txt']);
  const text = shards.flatMap((f) => readFileSync(join(D1, '.distill-shards', f), 'utf8').split('\n').slice(0, -1));
  assert.deepEqual(text, Array.from({ length: dist.length }, (_, i) => dict.string(dist.get(i))));
  const log = readFileSync(join(D1, 'distill.log'), 'utf8');
  assert.match(log, /\[en\] train: 150 sents, \d+ tokens/);
  assert.match(log, /decoded 150 sentences in [\d.]+s \([\d.]+ sentences\/s\)/);
  assert.match(r.stderr, /"sentencesPerSecond":/);
});

test('distill resumes from the shards present and gives identical output', () => {
  const d2 = join(tmp.path, 'resumed');
  cpSync(join(D1, '.distill-shards'), join(d2, '.distill-shards'), { recursive: true });
  rmSync(join(d2, '.distill-shards', 'shard-00002.txt'));
  const r = runCli('difformer-distill', distillArgs(d2));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /resuming: 2 of 3 shards already decoded/);
  assert.match(readFileSync(join(d2, 'distill.log'), 'utf8'), /decoded 30 sentences .*2 of 3 shards reused/);
  const files = readdirSync(D1).filter((f) => /\.(bin|idx|txt|model)$/.test(f));
  assert.ok(files.length >= 14);
  for (const f of files) assert.ok(same(join(D1, f), join(d2, f)), `${f} identical after resuming`);
  assert.ok(!existsSync(join(d2, '.distill-shards')), 'shards removed after assembly');
  // a finished data-bin is not overwritten
  const again = runCli('difformer-distill', distillArgs(d2));
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already holds a data-bin/);
  // other settings cannot reuse the shards
  const d3 = join(tmp.path, 'other');
  cpSync(join(D1, '.distill-shards'), join(d3, '.distill-shards'), { recursive: true });
  const bad = runCli('difformer-distill', distillArgs(d3, ['--lenpen', '0.6']));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /holds shards of a distillation with other settings \(generation differ\)/);
});

test('distill fails clearly when the teacher was trained on another dictionary', () => {
  const other = join(tmp.path, 'bin2');
  const p = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'valid'), '--testpref', join(RAW, 'test'), '--destdir', other, '--joined-dictionary']);
  assert.equal(p.code, 0, p.stderr);
  const r = runCli('difformer-distill', [other, '--path', TEACHER, '--destdir', join(tmp.path, 'nope')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /error: .*trained with a source dictionary of \d+ types, but the data has \d+ types/);
  const m = runCli('difformer-distill', [BIN, '--path', TEACHER]);
  assert.match(m.stderr, /--destdir is required/);
});

test('distill: sources longer than the teacher has positions for keep their original targets', () => {
  const short = join(tmp.path, 'teacher12');
  const t = runCli('difformer-train', [
    BIN, '--arch', 'transformer_tiny', '--optimizer', 'adam', '--lr', '3e-3', '--max-tokens', '1024', '--max-update', '2',
    '--max-source-positions', '12', '--save-dir', short, '--no-epoch-checkpoints', '--disable-validation', '--log-format', 'none',
  ]);
  assert.equal(t.code, 0, t.stderr);
  const dest = join(tmp.path, 'distilled12');
  const r = runCli('difformer-distill', [BIN, '--path', join(short, 'checkpoint_last.safetensors'), '--destdir', dest, '--beam', '1', '--max-len-b', '8', '--log-format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  const src = new IndexedDataset(join(BIN, 'train.de-en.de'));
  const orig = new IndexedDataset(join(BIN, 'train.de-en.en'));
  const dist = new IndexedDataset(join(dest, 'train.de-en.en'));
  const dict = Dictionary.fromText(readFileSync(join(BIN, 'dict.en.txt'), 'utf8'));
  let long = 0;
  for (let i = 0; i < src.length; i++) {
    if (src.sizes[i]! <= 12) continue;
    long++;
    assert.equal(dict.string(dist.get(i)), dict.string(orig.get(i)), `sentence ${i} (${src.sizes[i]} source tokens) keeps its reference`);
  }
  assert.ok(long > 0 && long < src.length, `${long} of ${src.length} sources are longer than 12 tokens`);
  assert.match(r.stderr, new RegExp(`"sentences":${long},"maxSourcePositions":12`));
  assert.match(readFileSync(join(dest, 'distill.log'), 'utf8'), new RegExp(`${long} sources longer than the teacher's 12 positions kept their original targets`));
});

test('distill an en->de teacher on a de-en data-bin: the de files get the distilled targets, the en sources stay', () => {
  const rev = join(tmp.path, 'teacher-en-de');
  const t = runCli('difformer-train', [
    BIN, '-s', 'en', '-t', 'de', '--arch', 'transformer_tiny', '--optimizer', 'adam', '--lr', '3e-3', '--max-tokens', '1024', '--max-update', '2',
    '--save-dir', rev, '--no-epoch-checkpoints', '--disable-validation', '--log-format', 'none',
  ]);
  assert.equal(t.code, 0, t.stderr);
  const dest = join(tmp.path, 'distilled-en-de');
  const r = runCli('difformer-distill', [BIN, '--path', join(rev, 'checkpoint_last.safetensors'), '--destdir', dest, '--beam', '1', '--max-len-b', '4', '--log-format', 'none']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(dest).filter((f) => f.startsWith('train.')).sort(), ['train.de-en.de.bin', 'train.de-en.de.idx', 'train.de-en.en.bin', 'train.de-en.en.idx']);
  for (const ext of ['bin', 'idx']) assert.ok(same(join(BIN, `train.de-en.en.${ext}`), join(dest, `train.de-en.en.${ext}`)), 'en sources copied');
  assert.ok(!same(join(BIN, 'train.de-en.de.bin'), join(dest, 'train.de-en.de.bin')), 'de targets distilled');
  const dist = new IndexedDataset(join(dest, 'train.de-en.de'));
  assert.ok(dist.sizes.every((n) => n <= 5), 'teacher output: at most --max-len-b tokens + EOS');
});
