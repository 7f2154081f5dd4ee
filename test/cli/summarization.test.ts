/** The summarization task end to end on real Debian descriptions: ROUGE lines before BLEU4. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FIXTURES, runCli, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

test('summarization: preprocess src/tgt, train, generate prints ROUGE-1/2/L then the BLEU4 line', () => {
  const raw = join(FIXTURES, 'debdesc');
  const bin = join(tmp.path, 'bin');
  const p = runCli('difformer-preprocess', ['-s', 'src', '-t', 'tgt', '--trainpref', join(raw, 'train'), '--validpref', join(raw, 'valid'), '--testpref', join(raw, 'test'), '--destdir', bin, '--joined-dictionary', '--spm-vocab-size', '600']);
  assert.equal(p.code, 0, p.stderr);
  const ckpt = join(tmp.path, 'ck');
  const t = runCli('difformer-train', [bin, '--task', 'summarization', '--arch', 'transformer_tiny', '--share-all-embeddings', '--optimizer', 'adam', '--lr', '1e-3', '--max-tokens', '4096', '--max-update', '3', '--save-dir', ckpt, '--log-format', 'none']);
  assert.equal(t.code, 0, t.stderr);
  const g = runCli('difformer-generate', [bin, '--path', join(ckpt, 'checkpoint_last.safetensors'), '--beam', '1', '--max-len-b', '8', '--remove-bpe', 'sentencepiece', '--quiet', '--log-format', 'none']);
  assert.equal(g.code, 0, g.stderr);
  const lines = g.stdout.trim().split('\n');
  assert.deepEqual(lines.map((l) => l.replace(/[\d.]+/g, 'N')), [
    'Generate test with beam=N: ROUGE-N P/R/F = N/N/N',
    'Generate test with beam=N: ROUGE-N P/R/F = N/N/N',
    'Generate test with beam=N: ROUGE-L P/R/F = N/N/N',
    'Generate test with beam=N: BLEUN = N, N/N/N/N (BP=N, ratio=N, syslen=N, reflen=N)',
  ]);
});

test('a length head that cannot name the summaries\' lengths is reported at the start of training', () => {
  // Debian descriptions run past 128 tokens more than their one-line synopses: with the official
  // --pred-length-offset (tgt - src + 128) those pairs fall below class 0
  const raw = join(FIXTURES, 'debdesc');
  const bin = join(tmp.path, 'bin-len');
  const p = runCli('difformer-preprocess', ['-s', 'src', '-t', 'tgt', '--trainpref', join(raw, 'train'), '--validpref', join(raw, 'valid'), '--destdir', bin, '--joined-dictionary', '--spm-vocab-size', '300']);
  assert.equal(p.code, 0, p.stderr);
  const train = (extra: string[]) =>
    runCli('difformer-train', [bin, '--task', 'summarization', '--arch', 'difformer_tiny', '--criterion', 'difformer', '--optimizer', 'adam', '--lr', '1e-3',
      '--max-tokens', '8192', '--max-update', '1', '--truncate-source', '--no-save', '--disable-validation', '--log-format', 'json', ...extra]);
  const off = train([]);
  assert.equal(off.code, 0, off.stderr);
  const warn = off.stderr.split('\n').find((l) => l.includes('length head cannot predict'));
  assert.ok(warn, 'warned with the official offset classes');
  const { pairs, share } = JSON.parse(warn) as { pairs: number; share: number };
  assert.ok(pairs > 0 && share > 0.01 && share < 1, `${pairs} pairs, share ${share}`);
  assert.match(warn, /--no-pred-length-offset predicts the target length itself/);
  const abs = train(['--no-pred-length-offset']);
  assert.equal(abs.code, 0, abs.stderr);
  assert.doesNotMatch(abs.stderr, /length head cannot predict/);
  // an autoregressive model has no length head: nothing to say
  const ar = runCli('difformer-train', [bin, '--task', 'summarization', '--arch', 'transformer_tiny', '--optimizer', 'adam', '--lr', '1e-3', '--max-tokens', '8192', '--max-update', '1', '--no-save', '--disable-validation', '--log-format', 'json']);
  assert.equal(ar.code, 0, ar.stderr);
  assert.doesNotMatch(ar.stderr, /length head/);
});

test('--skip-invalid-size-inputs-valid-test: ROUGE covers the decoded documents only, as difformer-score on their H-/T- lines', () => {
  const raw = join(FIXTURES, 'debdesc');
  const bin = join(tmp.path, 'bin-skip');
  const p = runCli('difformer-preprocess', ['-s', 'src', '-t', 'tgt', '--trainpref', join(raw, 'train'), '--testpref', join(raw, 'test'), '--destdir', bin, '--joined-dictionary', '--spm-vocab-size', '300']);
  assert.equal(p.code, 0, p.stderr);
  const ckpt = join(tmp.path, 'ck-skip');
  const t = runCli('difformer-train', [bin, '--task', 'summarization', '--arch', 'transformer_tiny', '--share-all-embeddings', '--optimizer', 'adam', '--lr', '3e-3', '--max-tokens', '8192', '--max-update', '3', '--max-source-positions', '60', '--save-dir', ckpt, '--disable-validation', '--log-format', 'none']);
  assert.equal(t.code, 0, t.stderr);
  const g = runCli('difformer-generate', [bin, '--path', join(ckpt, 'checkpoint_last.safetensors'), '--beam', '1', '--max-len-b', '6', '--skip-invalid-size-inputs-valid-test', '--log-format', 'none']);
  assert.equal(g.code, 0, g.stderr);
  const lines = g.stdout.trim().split('\n');
  const field = (prefix: string, col: number) => lines.filter((l) => l.startsWith(prefix)).map((l) => l.split('\t')).sort((a, b) => Number(a[0]!.slice(2)) - Number(b[0]!.slice(2))).map((x) => x[col] ?? '');
  const hyps = field('H-', 2);
  const docs = readFileSync(join(raw, 'test.src'), 'utf8').trim().split('\n').length;
  assert.ok(hyps.length > 0 && hyps.length < docs, `${hyps.length} of ${docs} documents fit in 60 tokens`);
  writeFileSync(join(tmp.path, 'skip.hyp'), `${hyps.join('\n')}\n`);
  writeFileSync(join(tmp.path, 'skip.ref'), `${field('T-', 1).join('\n')}\n`);
  const s = runCli('difformer-score', ['--metric', 'rouge', '-s', join(tmp.path, 'skip.hyp'), '-r', join(tmp.path, 'skip.ref'), '--log-format', 'none']);
  assert.equal(s.code, 0, s.stderr);
  const rouge = lines.filter((l) => l.includes('ROUGE')).map((l) => l.replace(/^Generate test with beam=1: /, ''));
  assert.deepEqual(rouge, s.stdout.trim().split('\n'));
});
