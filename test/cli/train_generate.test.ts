/**
 * The newcomer's commands on fixtures: preprocess -> train -> resume -> generate, fairseq's
 * output format, and the user errors of training and generation.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FIXTURES, assertCliError, runCli, tempDir } from '../helpers.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const BIN = join(tmp.path, 'bin');
const RAW = join(FIXTURES, 'gettext');

const trainArgs = (saveDir: string, maxUpdate: number, extra: string[] = []) => [
  BIN, '--task', 'translation', '--arch', 'transformer_tiny', '--criterion', 'label_smoothed_cross_entropy',
  '--label-smoothing', '0.1', '--optimizer', 'adam', '--lr', '1e-3', '--lr-scheduler', 'inverse_sqrt',
  '--warmup-updates', '50', '--max-tokens', '512', '--seed', '1', '--save-dir', saveDir,
  '--max-update', String(maxUpdate), '--log-format', 'json', '--log-interval', '1', ...extra,
];

/** Per-update training losses from json logs: update number -> loss string. */
function losses(stderr: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as Record<string, string>;
    if (o.loss && o.num_updates) out.set(Number(o.num_updates), o.loss);
  }
  return out;
}

before(() => {
  const r = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--validpref', join(RAW, 'valid'), '--testpref', join(RAW, 'test'), '--destdir', BIN, '--joined-dictionary', '--spm-vocab-size', '500']);
  assert.equal(r.code, 0, r.stderr);
});

test('train, then resume from checkpoint_last: the resumed updates reproduce the uninterrupted losses', () => {
  const straight = runCli('difformer-train', trainArgs(join(tmp.path, 'ckA'), 12));
  assert.equal(straight.code, 0, straight.stderr);
  const first = runCli('difformer-train', trainArgs(join(tmp.path, 'ckB'), 6));
  assert.equal(first.code, 0, first.stderr);
  const resumed = runCli('difformer-train', trainArgs(join(tmp.path, 'ckB'), 12));
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /loaded checkpoint .*checkpoint_last\.safetensors \(epoch \d+ @ 6 updates\)/);
  assert.doesNotMatch(resumed.stderr, /model options differ/);
  // the command line wins, as in fairseq, but a changed model option is named
  const changed = runCli('difformer-train', trainArgs(join(tmp.path, 'ckB'), 13, ['--dropout', '0.37']));
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stderr, /model options differ from .*checkpoint_last\.safetensors, the command line's are used: dropout: [\d.]+ -> 0\.37/);
  const a = losses(straight.stderr);
  const b = losses(resumed.stderr);
  assert.ok(b.size >= 4, `resumed run logged ${b.size} updates`);
  for (const [u, loss] of b) assert.equal(loss, a.get(u), `loss at update ${u}`);
  // fairseq's json fields per log interval
  for (const f of ['loss', 'nll_loss', 'ppl', 'wps', 'ups', 'wpb', 'bsz', 'num_updates', 'lr', 'gnorm', 'train_wall']) assert.match(straight.stderr, new RegExp(`"${f}":"[-\\d.e+]+"`), f);
});

test('--stop-time-hours: stops on cumulative training time, saved in the checkpoint and counted across resumes', () => {
  // 1e-7 h = 0.36 ms: any update takes longer, so training stops after its first update
  const first = runCli('difformer-train', trainArgs(join(tmp.path, 'ckT'), 1000, ['--stop-time-hours', '1e-7']));
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /done training: reached --stop-time-hours 1e-7/);
  assert.equal(Math.max(...losses(first.stderr).keys()), 1);
  const again = runCli('difformer-train', trainArgs(join(tmp.path, 'ckT'), 1000, ['--stop-time-hours', '1e-7']));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /done training: --stop-time-hours 1e-7 already reached/);
  assert.equal(losses(again.stderr).size, 0);
  // fairseq's --reset-meters restarts the time meter (and so the budget): one more update
  const reset = runCli('difformer-train', trainArgs(join(tmp.path, 'ckT'), 1000, ['--stop-time-hours', '1e-7', '--reset-meters', '--reset-dataloader', '--reset-lr-scheduler']));
  assert.equal(reset.code, 0, reset.stderr);
  assert.match(reset.stderr, /"resetDataloader":true,"resetMeters":true/);
  assert.deepEqual([...losses(reset.stderr).keys()], [2]);
});

test('--finetune-from-model: weights only on the first run (counters restart), then the same command resumes its own checkpoint_last', () => {
  const src = runCli('difformer-train', trainArgs(join(tmp.path, 'ckI'), 12));
  assert.equal(src.code, 0, src.stderr);
  const init = join(tmp.path, 'ckI', 'checkpoint_last.safetensors');
  const args = (n: number) => trainArgs(join(tmp.path, 'ckF'), n, ['--finetune-from-model', init]);
  const first = runCli('difformer-train', args(3));
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /loaded the weights of .*ckI\/checkpoint_last\.safetensors; optimizer, counters and schedule start afresh/);
  assert.deepEqual([...losses(first.stderr).keys()], [1, 2, 3]);
  // starting from 12 trained updates: the first loss is below a fresh model's (9.36 vs 9.78)
  const fresh = losses(runCli('difformer-train', trainArgs(join(tmp.path, 'ckG'), 1)).stderr).get(1)!;
  assert.ok(Number(losses(first.stderr).get(1)) < Number(fresh) - 0.2, `${losses(first.stderr).get(1)} vs fresh ${fresh}`);
  const again = runCli('difformer-train', args(5));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /loaded checkpoint .*ckF\/checkpoint_last\.safetensors \(epoch \d+ @ 3 updates\)/);
  assert.deepEqual([...losses(again.stderr).keys()], [4, 5]);
  const missing = runCli('difformer-train', trainArgs(join(tmp.path, 'ckH'), 1, ['--finetune-from-model', join(tmp.path, 'nope.safetensors')]));
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /--finetune-from-model: checkpoint not found: .*nope\.safetensors/);
  for (const extra of [['--reset-optimizer'], ['--restore-file', init]]) {
    const bad = runCli('difformer-train', trainArgs(join(tmp.path, 'ckH'), 1, ['--finetune-from-model', init, ...extra]));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--finetune-from-model cannot be combined with --reset-optimizer or --restore-file/);
  }
});

test('a whole epoch: train_/valid_ fields and per-epoch, best and last checkpoints', () => {
  const r = runCli('difformer-train', trainArgs(join(tmp.path, 'ckE'), 0, ['--max-epoch', '1', '--max-tokens', '4096']));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /"train_loss":"[\d.]+","train_nll_loss":"[\d.]+","train_ppl":"[\d.]+","train_num_updates":"\d+"/);
  assert.match(r.stderr, /"valid_loss":"[\d.]+","valid_nll_loss":"[\d.]+","valid_ppl":"[\d.]+","valid_best_loss":"[\d.]+"/);
  assert.match(r.stderr, /done training: reached --max-epoch 1/);
  const files = readdirSync(join(tmp.path, 'ckE'));
  for (const f of ['checkpoint_last.safetensors', 'checkpoint_best.safetensors', 'checkpoint1.safetensors']) assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
});

test('training pairs longer than --max-tokens are skipped with a count that names the limit, not dropped unseen', () => {
  const r = runCli('difformer-train', trainArgs(join(tmp.path, 'ckMT'), 1, ['--max-tokens', '16', '--no-save', '--disable-validation']));
  assert.equal(r.code, 0, r.stderr);
  const n = Number(/skipped (\d+) training pairs longer than --max-tokens 16/.exec(r.stderr)?.[1]);
  assert.ok(n > 0, r.stderr);
});

test('a de-en data-bin trains en->de too (fairseq reads the reversed pair\'s files); a missing valid split is an error', () => {
  const r = runCli('difformer-train', trainArgs(join(tmp.path, 'ckR'), 1, ['-s', 'en', '-t', 'de', '--no-save']));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[en\] dictionary: \d+ types, \[de\] dictionary/);
  const typo = runCli('difformer-train', trainArgs(join(tmp.path, 'ckR'), 1, ['--valid-subset', 'vaild', '--no-save']));
  assert.equal(typo.code, 1, typo.stderr);
  assert.match(typo.stderr, /no 'vaild' split in .* \(--valid-subset\): .*--disable-validation/);
});

test('generate prints S-/T-/H-/D-/P- lines and a final BLEU4 line that agrees with difformer-score', () => {
  const ckpt = join(tmp.path, 'ckA', 'checkpoint_last.safetensors');
  const g = runCli('difformer-generate', [BIN, '--path', ckpt, '--gen-subset', 'test', '--beam', '3', '--batch-size', '32', '--remove-bpe', 'sentencepiece', '--max-len-b', '10']);
  assert.equal(g.code, 0, g.stderr);
  const lines = g.stdout.trim().split('\n');
  const last = lines[lines.length - 1]!;
  assert.match(last, /^Generate test with beam=3: BLEU4 = [\d.]+, /);
  for (const p of ['S', 'T', 'H', 'D', 'P']) assert.equal(lines.filter((l) => l.startsWith(`${p}-`)).length, 80, `${p}- lines`);
  const h = lines.find((l) => l.startsWith('H-'))!.split('\t');
  assert.equal(h.length, 3);
  assert.ok(Number(h[1]) < 0, 'base-2 score');
  const p = lines.find((l) => l.startsWith('P-'))!.split('\t')[1]!.split(' ');
  assert.ok(p.every((x) => /^-?\d+\.\d{4}$/.test(x)), 'P- scores with 4 decimals');
  const byId = (prefix: string, field: number) =>
    lines.filter((l) => l.startsWith(prefix)).map((l) => l.split('\t')).sort((x, y) => Number(x[0]!.slice(2)) - Number(y[0]!.slice(2))).map((x) => x[field] ?? '');
  writeFileSync(join(tmp.path, 'sys'), byId('H-', 2).join('\n') + '\n');
  writeFileSync(join(tmp.path, 'ref'), byId('T-', 1).join('\n') + '\n');
  const s = runCli('difformer-score', ['--sys', join(tmp.path, 'sys'), '--ref', join(tmp.path, 'ref')]);
  assert.equal(s.stdout.trim(), last.replace(/^Generate test with beam=3: /, ''));
  // --sacrebleu: the final line is sacreBLEU's, the same as difformer-score --sacrebleu on H-/T-
  const sb = runCli('difformer-generate', [BIN, '--path', ckpt, '--gen-subset', 'test', '--beam', '3', '--batch-size', '32', '--remove-bpe', 'sentencepiece', '--max-len-b', '10', '--sacrebleu', '--quiet']);
  assert.equal(sb.code, 0, sb.stderr);
  const ss = runCli('difformer-score', ['--sys', join(tmp.path, 'sys'), '--ref', join(tmp.path, 'ref'), '--sacrebleu']);
  assert.match(ss.stdout, /^BLEU\|nrefs:1\|.* = [\d.]+ /);
  assert.equal(sb.stdout.trim(), `Generate test with beam=3: ${ss.stdout.trim()}`);
  // --score-reference: the H- lines are the references (as T-), scored by the model
  const sr = runCli('difformer-generate', [BIN, '--path', ckpt, '--gen-subset', 'test', '--score-reference', '--batch-size', '32', '--remove-bpe', 'sentencepiece']);
  assert.equal(sr.code, 0, sr.stderr);
  const col = (prefix: string, field: number) => new Map(sr.stdout.split('\n').filter((l) => l.startsWith(prefix)).map((l) => [l.split('\t')[0]!.slice(2), l.split('\t')[field]!]));
  const [hs, ts] = [col('H-', 2), col('T-', 1)];
  assert.equal(hs.size, 80);
  const same = [...hs].filter(([id, h]) => h === ts.get(id)).length;
  assert.ok(same >= 70, `${same} of 80 H- lines equal their T- line (references with <unk> print it differently)`);
  assert.ok([...col('H-', 1).values()].every((v) => Number(v) < 0), 'log-prob scores');
  // --quiet prints only the score line; --results-path writes generate-test.txt
  const q = runCli('difformer-generate', [BIN, '--path', ckpt, '--beam', '1', '--quiet', '--results-path', join(tmp.path, 'res'), '--max-len-b', '10']);
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stdout, '');
  const written = readFileSync(join(tmp.path, 'res', 'generate-test.txt'), 'utf8');
  assert.match(written, /^Generate test with beam=1: BLEU4 = /);
  // a later run that fails leaves the earlier results whole (the file is replaced only at the end)
  const bad = runCli('difformer-generate', [BIN, '--path', ckpt, '--beam', '1', '--results-path', join(tmp.path, 'res'), '--max-tokens', '3']);
  assert.equal(bad.code, 1, bad.stderr);
  assert.equal(readFileSync(join(tmp.path, 'res', 'generate-test.txt'), 'utf8'), written);
  // a results path that cannot be written fails before decoding, not after it
  writeFileSync(join(tmp.path, 'a-file'), 'x');
  const unwritable = runCli('difformer-generate', [BIN, '--path', ckpt, '--beam', '1', '--results-path', join(tmp.path, 'a-file', 'res'), '--log-format', 'json']);
  assert.equal(unwritable.code, 1, unwritable.stderr);
  assert.match(unwritable.stderr, /cannot write .*a-file\/res\/generate-test\.txt/);
  assert.doesNotMatch(unwritable.stderr, /translated \d+ sentences/);
});

test('interactive: --input - reads raw sentences, encodes them with the data-bin spm model', () => {
  const ckpt = join(tmp.path, 'ckA', 'checkpoint_last.safetensors');
  const g = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '2', '--remove-bpe', 'sentencepiece', '--max-len-b', '5'], { input: 'Datei öffnen\nDrucken\n' });
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /^S-0\tDatei öffnen\nH-0\t-[\d.]+\t.*\nD-0\t/m);
  assert.match(g.stdout, /^S-1\tDrucken$/m);
  // as fairseq-interactive, output follows the input order, not the (length-sorted) batch order
  const ordered = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--max-len-b', '3'], { input: 'Die Datei konnte nicht geöffnet werden\nDrucken\nDatei öffnen\n' });
  assert.equal(ordered.code, 0, ordered.stderr);
  assert.deepEqual(ordered.stdout.split('\n').filter((l) => /^[SH]-/.test(l)).map((l) => l.split('\t')[0]), ['S-0', 'H-0', 'S-1', 'H-1', 'S-2', 'H-2']);
  // --buffer-size (fairseq-interactive): decoded a few at a time, same lines, ids counted across chunks
  const chunked = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--max-len-b', '3', '--buffer-size', '2'], { input: 'Die Datei konnte nicht geöffnet werden\r\nDrucken\nDatei öffnen\n' });
  assert.equal(chunked.code, 0, chunked.stderr);
  // (other batch shapes: the same tokens, scores equal up to float noise)
  const noScores = (o: string) => o.split('\n').map((l) => (/^[HD]-/.test(l) ? l.replace(/\t[^\t]*\t/, '\t') : l)).join('\n');
  assert.equal(noScores(chunked.stdout), noScores(ordered.stdout));
  // a sentence too long (here: for --max-tokens), in the second chunk, is named by its input line
  const long = Array.from({ length: 30 }, () => 'Datei').join(' ');
  const tooLong = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--buffer-size', '2', '--max-tokens', '20'], { input: `Drucken\nDatei öffnen\n${long}\n` });
  assert.equal(tooLong.code, 1);
  assert.match(tooLong.stderr, /input: sentence 2 has \d+ source tokens/);
  const skipped = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--max-len-b', '3', '--buffer-size', '2', '--max-tokens', '20', '--skip-invalid-size-inputs-valid-test'], { input: `Drucken\nDatei öffnen\n${long}\n` });
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.deepEqual(skipped.stdout.split('\n').filter((l) => l.startsWith('H-')).map((l) => l.split('\t')[0]), ['H-0', 'H-1']);
  // streamed input is checked as a file is: invalid UTF-8 names the line, no U+FFFD decoded
  const badBytes = Buffer.concat([Buffer.from('Drucken\nDatei öffnen\nDatei '), Buffer.from([0xf6]), Buffer.from('ffnen\n')]);
  assertCliError(runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--max-len-b', '3', '--buffer-size', '2'], { input: badBytes }), 'difformer-generate', /stdin: invalid UTF-8 at line 3/);
  assert.doesNotMatch(g.stdout, /BLEU4/);
  // input as the preprocess reads it: CRLF line ends, a missing file is one user error
  const crlf = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', '-', '--beam', '1', '--max-len-b', '3'], { input: 'Drucken\r\nSpeichern\r\n' });
  assert.equal(crlf.code, 0, crlf.stderr);
  assert.match(crlf.stdout, /^S-1\tSpeichern$/m);
  assert.doesNotMatch(crlf.stdout, /\r/);
  const missing = runCli('difformer-generate', [BIN, '--path', ckpt, '--input', join(tmp.path, 'no-such-input.txt')]);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /file not found: .*no-such-input\.txt/);
});

test('held-out text without references: preprocess --only-source into the data-bin, then generate prints no T- lines and no score', () => {
  const bin = join(tmp.path, 'bin-src-only');
  cpSync(BIN, bin, { recursive: true });
  const p = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--testpref', join(RAW, 'test'), '--destdir', bin, '--only-source', '--tgtdict', join(bin, 'dict.en.txt'), '--joined-dictionary', '--spm-model', join(bin, 'spm.model')]);
  assert.equal(p.code, 0, p.stderr);
  assert.ok(existsSync(join(bin, 'test.de-en.de.idx')) && !existsSync(join(bin, 'test.de-en.en.idx')), 'old references removed');
  const g = runCli('difformer-generate', [bin, '--path', join(tmp.path, 'ckA', 'checkpoint_last.safetensors'), '--beam', '1', '--max-len-b', '5', '--remove-bpe', 'sentencepiece']);
  assert.equal(g.code, 0, g.stderr);
  const n = readFileSync(join(RAW, 'test.de'), 'utf8').trimEnd().split('\n').length;
  assert.equal(g.stdout.split('\n').filter((l) => l.startsWith('H-')).length, n);
  assert.doesNotMatch(g.stdout, /^T-|BLEU4/m);
  const train = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'train'), '--destdir', join(tmp.path, 'x-only'), '--only-source']);
  assert.equal(train.code, 1);
  assert.match(train.stderr, /--only-source is for held-out text/);
  // a valid split without targets cannot validate training: one error before training starts
  const v = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--validpref', join(RAW, 'valid'), '--destdir', bin, '--only-source', '--tgtdict', join(bin, 'dict.en.txt'), '--joined-dictionary', '--spm-model', join(bin, 'spm.model')]);
  assert.equal(v.code, 0, v.stderr);
  const t = runCli('difformer-train', [bin, ...trainArgs(join(tmp.path, 'ckV0'), 1).slice(1)]);
  assert.equal(t.code, 1, t.stderr);
  assert.match(t.stderr, /the 'valid' split of .* has no targets \(preprocessed with --only-source\)/);
});

test('as fairseq, a mid-epoch save (--save-interval-updates) validates too', () => {
  const r = runCli('difformer-train', trainArgs(join(tmp.path, 'ckV'), 4, ['--save-interval-updates', '2']));
  assert.equal(r.code, 0, r.stderr);
  const valids = r.stderr.split('\n').filter((l) => l.includes("valid on 'valid' subset"));
  assert.ok(valids.some((l) => l.includes('"valid_num_updates":"2"')), valids.join('\n'));
});

test('generate: a source longer than the model reads fails before decoding, or is skipped with --skip-invalid-size-inputs-valid-test', () => {
  const dir = join(tmp.path, 'ck12');
  const t = runCli('difformer-train', trainArgs(dir, 1, ['--max-source-positions', '12']));
  assert.equal(t.code, 0, t.stderr);
  const args = [BIN, '--path', join(dir, 'checkpoint_last.safetensors'), '--gen-subset', 'test', '--beam', '1', '--max-len-b', '5'];
  const g = runCli('difformer-generate', args);
  assert.equal(g.code, 1, g.stderr);
  assert.match(g.stderr, /error: test: sentence \d+ has \d+ source and \d+ target tokens \(BOS\/EOS included\), but the model reads at most 12 source tokens \(\d+ sentences too long\): skip them with --skip-invalid-size-inputs-valid-test/);
  assert.equal(g.stdout, '', 'nothing decoded before the error');
  const s = runCli('difformer-generate', [...args, '--skip-invalid-size-inputs-valid-test']);
  assert.equal(s.code, 0, s.stderr);
  const skipped = Number(/(\d+) sentences of test skipped/.exec(s.stderr)?.[1]);
  const decoded = s.stdout.split('\n').filter((l) => l.startsWith('H-')).length;
  assert.ok(skipped > 0 && decoded > 0, `${skipped} skipped, ${decoded} decoded`);
  assert.equal(skipped + decoded, 80);
  assert.match(s.stderr, new RegExp(`translated ${decoded} sentences`));
  assert.match(s.stdout, /^Generate test with beam=1: BLEU4 = /m);
  // nothing left to decode, and a --max-tokens too small for a sentence, each say so
  const none = runCli('difformer-generate', [...args, '--skip-invalid-size-inputs-valid-test', '--max-tokens', '2']);
  assert.equal(none.code, 1, none.stderr);
  assert.match(none.stderr, /error: test: all 80 sentences are too long \(sentence \d+: \d+ source and \d+ target tokens .*\); nothing to decode/);
  const mt = runCli('difformer-generate', [BIN, '--path', join(tmp.path, 'ckA', 'checkpoint_last.safetensors'), '--gen-subset', 'test', '--max-tokens', '4']);
  assert.equal(mt.code, 1, mt.stderr);
  assert.match(mt.stderr, /but --max-tokens is 4 \(\d+ sentences too long\): raise --max-tokens/);
});

test('user errors: unknown arch, dictionary mismatch, missing checkpoint, NaN loss', () => {
  const u = runCli('difformer-train', trainArgs(join(tmp.path, 'ckX'), 1, ['--arch', 'transfomer_tiny']));
  assert.equal(u.code, 1);
  assert.match(u.stderr, /unknown architecture 'transfomer_tiny' \(--arch\); known: .*transformer_tiny/);
  // another data-bin with a different dictionary
  const other = join(tmp.path, 'bin2');
  const p = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(RAW, 'valid'), '--testpref', join(RAW, 'test'), '--destdir', other, '--joined-dictionary']);
  assert.equal(p.code, 0, p.stderr);
  const ckpt = join(tmp.path, 'ckA', 'checkpoint_last.safetensors');
  const m = runCli('difformer-generate', [other, '--path', ckpt]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /trained with a source dictionary of \d+ types, but the data has \d+ types/);
  const miss = runCli('difformer-generate', [BIN, '--path', join(tmp.path, 'nope.safetensors')]);
  assert.match(miss.stderr, /checkpoint not found: .*nope\.safetensors/);
  const nan = runCli('difformer-train', trainArgs(join(tmp.path, 'ckNaN'), 5, ['--lr', '1e30', '--warmup-updates', '0', '--lr-scheduler', 'fixed']));
  assert.equal(nan.code, 1, nan.stderr);
  assert.match(nan.stderr, /error: loss is (NaN|Infinity|-Infinity) .* at update \d+; lower --lr/);
  assert.doesNotMatch(nan.stderr, /^\s+at /m);
});

test('difformer-score --source-reliance: a table per timestep for a diffusion checkpoint, one clear error for an AR one', () => {
  const dir = join(tmp.path, 'ckD');
  const t = runCli('difformer-train', [
    ...trainArgs(dir, 2).slice(0, 4), 'difformer_tiny', '--criterion', 'difformer', ...trainArgs(dir, 2).slice(7),
  ]);
  assert.equal(t.code, 0, t.stderr);
  // --max-source-positions not given: the task takes the arch's 256 positions, not its own 1024
  const task = loadCheckpoint(join(dir, 'checkpoint_last.safetensors')).meta.config.task.options as Record<string, unknown>;
  assert.equal(task.maxSourcePositions, 256);
  assert.equal(task.maxTargetPositions, 256);
  const r = runCli('difformer-score', ['--source-reliance', BIN, '--path', join(dir, 'checkpoint_last.safetensors'), '--num-sentences', '20', '--log-format', 'none']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^Source reliance on valid \(20 sentences, \d+ target tokens/);
  assert.deepEqual(lines.slice(1).map((l) => l.split('\t')[0]), ['t=1999', 't=1500', 't=1000', 't=500', 't=0']);
  for (const l of lines.slice(1)) assert.match(l, /accuracy [01]\.\d{4} with its own source, [01]\.\d{4} with the next sentence's \([+-]\d\.\d{4}\)$/);
  // --print-step: I- lines with the last step index, K - E - 1 for the diffusion sampler
  const g = runCli('difformer-generate', [BIN, '--path', join(dir, 'checkpoint_last.safetensors'), '--decoding-steps', '6', '--decoding-early-stopping', '2', '--max-sentences-to-generate', '3', '--print-step']);
  assert.equal(g.code, 0, g.stderr);
  assert.deepEqual(g.stdout.split('\n').filter((l) => l.startsWith('I-')).map((l) => l.split('\t')[1]), ['3', '3', '3']);
  const ar = runCli('difformer-score', ['--source-reliance', BIN, '--path', join(tmp.path, 'ckA', 'checkpoint_last.safetensors')]);
  assert.equal(ar.code, 1);
  assert.match(ar.stderr, /--source-reliance needs a diffusion model \(difformer, diff_lm\); .* holds a transformer/);
  assert.doesNotMatch(ar.stderr, /^\s+at /m);
});
