/**
 * SentencePiece learning (src/data/spm_train.ts), the .model protobuf (src/data/spm_proto.ts)
 * and encoding through sentencepiece-js (src/data/spm.ts). Fixture: 300 aligned de/en lines of
 * the gettext-de-en training data (test/fixtures/spm/README.md).
 *
 * Round trips are exact modulo `normalizeText` (NFKC, whitespace characters -> one space, ends
 * trimmed, control characters dropped).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SentencePieceModel, normalizeText, removeSentencePiece, trainSentencePiece } from '../../src/data/spm.js';
import { ModelType, PieceType, decodeModelProto, encodeModelProto } from '../../src/data/spm_proto.js';
import { countWords, learnBpe } from '../../src/data/spm_train.js';
import { learnUnigram } from '../../src/data/spm_unigram.js';
import { isDifformerError } from '../../src/errors.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'spm');
const read = (name: string): string[] => readFileSync(join(FIXTURES, name), 'utf8').split('\n').filter((l) => l !== '');
const LINES = [...read('sample.de'), ...read('sample.en')];
const TMP = mkdtempSync(join(tmpdir(), 'difformer-spm-test-'));
const VOCAB = 600;
after(() => rmSync(TMP, { recursive: true, force: true }));

function onPath(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const HAVE_SPM_ENCODE = onPath('spm_encode');
const HAVE_SPM_TRAIN = onPath('spm_train');

async function train(modelType: 'bpe' | 'unigram', name: string, vocabSize = VOCAB): Promise<string> {
  const res = await trainSentencePiece({
    inputs: LINES, vocabSize, modelType, outputPath: join(TMP, name), seed: 1, useSystemSpmTrain: false,
  });
  assert.equal(res.engine, 'typescript');
  return res.path;
}

const hasCode = (code: string) => (e: unknown): boolean => isDifformerError(e) && e.code === code;

test('fixture is 300 aligned lines per side', () => {
  assert.equal(read('sample.de').length, 300);
  assert.equal(read('sample.en').length, 300);
});

test('ModelProto writer and reader round-trip, including negative ints and floats', () => {
  const proto = {
    pieces: [
      { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
      { piece: '▁Datei', score: -1.5, type: PieceType.NORMAL },
      { piece: 'ü', score: -123.25, type: PieceType.NORMAL },
    ],
    trainerSpec: { modelType: ModelType.BPE, vocabSize: 3, padId: -1, characterCoverage: 0.5, byteFallback: false },
    normalizerSpec: { name: 'identity', addDummyPrefix: true },
  };
  assert.deepEqual(decodeModelProto(encodeModelProto(proto)), proto);
  assert.throws(() => decodeModelProto(new Uint8Array([0x0a, 0xff])), hasCode('DIFFORMER_BAD_DATA'));
});

test('normalizeText: NFKC and whitespace cleanup', () => {
  assert.equal(normalizeText('  Ｄａｔｅｉ\u00a0»%s«\t\tist\u200b leer\r\n'), 'Datei »%s« ist leer');
  assert.equal(normalizeText('plain ascii line'), 'plain ascii line');
  assert.equal(normalizeText('ﬁle ①'), 'file 1');
  for (const s of ['e\u0000\u0301 x', ' \u3000a\u2028b\u00a8 ', 'Ａ\tｂ\u0085c']) {
    assert.equal(normalizeText(normalizeText(s)), normalizeText(s), 'idempotent');
  }
  assert.equal(normalizeText('e\u0000\u0301'), '\u00e9');
});

test('BPE: learned model has the requested size, spm ids, and round-trips every line', async () => {
  const path = await train('bpe', 'bpe.model');
  const proto = decodeModelProto(readFileSync(path));
  assert.equal(proto.pieces.length, VOCAB);
  assert.deepEqual(proto.pieces.slice(0, 3).map((p) => [p.piece, p.type]),
    [['<unk>', PieceType.UNKNOWN], ['<s>', PieceType.CONTROL], ['</s>', PieceType.CONTROL]]);
  assert.equal(proto.trainerSpec.modelType, ModelType.BPE);
  assert.equal(proto.normalizerSpec.name, 'identity');
  assert.equal(new Set(proto.pieces.map((p) => p.piece)).size, VOCAB, 'pieces are unique');
  assert.deepEqual(readdirSync(TMP).filter((f) => f.includes('.tmp-')), [], 'no temp file left behind');

  const model = await SentencePieceModel.load(path);
  assert.equal(model.vocabSize, VOCAB);
  const known = new Set(proto.pieces.map((p) => p.piece));
  let multi = 0;
  for (const line of LINES) {
    const pieces = model.encodePieces(line);
    assert.equal(model.decodePieces(pieces), normalizeText(line));
    assert.equal(removeSentencePiece(pieces.join(' ')), normalizeText(line));
    // Pieces outside the vocabulary are runs of characters the 0.9995 coverage left out (<unk>).
    const unknown = pieces.filter((p) => !known.has(p));
    assert.ok(unknown.every((p) => [...p].every((ch) => !known.has(ch))), `unknown pieces ${unknown.join(' ')}`);
    multi += pieces.filter((p) => [...p].length > 1).length;
  }
  assert.ok(multi > LINES.length * 3, 'merges are actually used');
});

test('BPE: the learner segments every training word exactly as sentencepiece-js does', async () => {
  const table = await countWords(LINES, { vocabSize: VOCAB, modelType: 'bpe' });
  const learned = learnBpe(table, { vocabSize: VOCAB, modelType: 'bpe' });
  const model = await SentencePieceModel.load(join(TMP, 'bpe.model'));
  assert.deepEqual(learned.pieces, decodeModelProto(readFileSync(join(TMP, 'bpe.model'))).pieces);
  for (const word of table.words) assert.deepEqual(model.encodePieces(word.slice(1)), learned.segment(word), word);
});

test('BPE: training is deterministic (same bytes twice) and reports progress', async () => {
  const seen: [number, number][] = [];
  await trainSentencePiece({
    inputs: (async function* () { yield* LINES; })(), vocabSize: VOCAB, modelType: 'bpe',
    outputPath: join(TMP, 'bpe2.model'), seed: 1, useSystemSpmTrain: false, onProgress: (d, t) => seen.push([d, t]),
  });
  assert.deepEqual(readFileSync(join(TMP, 'bpe2.model')), readFileSync(join(TMP, 'bpe.model')));
  assert.ok(seen.length > 0 && seen.every(([d, t]) => d >= 0 && d <= t));
  assert.equal(seen.at(-1)![0], seen.at(-1)![1]);
});

test('unigram: loads, has the requested size, round-trips, learner Viterbi = engine, deterministic', async () => {
  const path = await train('unigram', 'uni.model');
  const proto = decodeModelProto(readFileSync(path));
  assert.equal(proto.pieces.length, VOCAB);
  assert.equal(proto.trainerSpec.modelType, ModelType.UNIGRAM);
  const scores = proto.pieces.slice(3).map((p) => p.score);
  assert.ok(scores.every((s, i) => i === 0 || s <= scores[i - 1]!), 'sorted by log-probability');
  assert.ok(scores.every((s) => s < 0 && Number.isFinite(s)));
  const model = await SentencePieceModel.load(path);
  for (const line of LINES) assert.equal(model.decodePieces(model.encodePieces(line)), normalizeText(line));

  const table = await countWords(LINES, { vocabSize: VOCAB, modelType: 'unigram' });
  const learned = learnUnigram(table, { vocabSize: VOCAB, modelType: 'unigram' });
  for (const word of table.words) assert.deepEqual(model.encodePieces(word.slice(1)), learned.segment(word), word);

  await train('unigram', 'uni2.model');
  assert.deepEqual(readFileSync(join(TMP, 'uni2.model')), readFileSync(path));
});

test('per-word cached encoding equals whole-line engine encoding', async () => {
  for (const name of ['bpe.model', 'uni.model']) {
    const cached = await SentencePieceModel.load(join(TMP, name));
    const whole = await SentencePieceModel.load(join(TMP, name), { cacheWords: false });
    for (const line of LINES) assert.deepEqual(cached.encodePieces(line), whole.encodePieces(line), line);
  }
});

test('unknown characters and unnormalised input survive a round trip (modulo normalizeText)', async () => {
  const model = await SentencePieceModel.load(join(TMP, 'bpe.model'));
  for (const text of ['Datei 你好 wurde 🙂 gelöscht', 'Ｆｅｈｌｅｒ:\t%s  ', 'Ä\u0308 → x', '']) {
    const pieces = model.encodePieces(text);
    assert.equal(model.decodePieces(pieces), normalizeText(text));
    assert.ok(pieces.every((p) => !p.includes(' ')));
  }
  assert.deepEqual(model.encodePieces('   '), []);
});

test('loading and encoding print nothing on stdout', () => {
  // A child process, because the test runner itself talks over this process's stdout.
  const spm = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'data', 'spm.ts');
  const code = `import { SentencePieceModel } from ${JSON.stringify(spm)};
    const m = await SentencePieceModel.load(${JSON.stringify(join(TMP, 'uni.model'))});
    m.encodePieces('Datei nicht gefunden');
    await SentencePieceModel.load(${JSON.stringify(join(TMP, 'garbage.model'))}).catch(() => {});`;
  writeFileSync(join(TMP, 'garbage.model'), 'this is not a protobuf\n');
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
  assert.equal(out.toString(), '');
});

test('spm_encode loads our .model files and gives the same pieces', {
  skip: HAVE_SPM_ENCODE ? false : 'spm_encode is not installed (apt-get install sentencepiece)',
}, async () => {
  const input = join(TMP, 'normalized.txt');
  writeFileSync(input, LINES.map(normalizeText).join('\n') + '\n');
  for (const name of ['bpe.model', 'uni.model']) {
    const model = await SentencePieceModel.load(join(TMP, name));
    const out = execFileSync('spm_encode', [`--model=${join(TMP, name)}`, '--output_format=piece', `--input=${input}`]).toString().split('\n');
    LINES.forEach((line, i) => assert.equal(model.encodePieces(line).join(' '), out[i], `${name}: ${line}`));
  }
});

test('spm_train engine: used when asked, model loads and round-trips', {
  skip: HAVE_SPM_TRAIN ? false : 'spm_train is not installed (apt-get install sentencepiece)',
}, async () => {
  const res = await trainSentencePiece({
    inputs: LINES, vocabSize: 300, modelType: 'bpe', outputPath: join(TMP, 'sys.model'), useSystemSpmTrain: true,
  });
  assert.equal(res.engine, 'spm_train');
  const model = await SentencePieceModel.load(res.path);
  assert.equal(model.vocabSize, 300);
  for (const line of LINES) assert.equal(model.decodePieces(model.encodePieces(line)), normalizeText(line));
});

test('user errors carry difformer error codes', async () => {
  await assert.rejects(SentencePieceModel.load(join(TMP, 'missing.model')), hasCode('DIFFORMER_FILE_NOT_FOUND'));
  writeFileSync(join(TMP, 'garbage.model'), 'this is not a protobuf\n');
  await assert.rejects(SentencePieceModel.load(join(TMP, 'garbage.model')), hasCode('DIFFORMER_BAD_DATA'));
  await assert.rejects(trainSentencePiece({
    inputs: ['', '  '], vocabSize: 100, modelType: 'bpe', outputPath: join(TMP, 'empty.model'), useSystemSpmTrain: false,
  }), hasCode('DIFFORMER_EMPTY_CORPUS'));
  const path = process.env.PATH;
  process.env.PATH = '';
  try {
    await assert.rejects(trainSentencePiece({
      inputs: LINES, vocabSize: 100, modelType: 'bpe', outputPath: join(TMP, 'x.model'), useSystemSpmTrain: true,
    }), hasCode('DIFFORMER_BAD_OPTION'));
  } finally {
    process.env.PATH = path;
  }
  for (const modelType of ['bpe', 'unigram'] as const) {
    await assert.rejects(trainSentencePiece({
      inputs: LINES.slice(0, 20), vocabSize: 5000, modelType, outputPath: join(TMP, 'big.model'), useSystemSpmTrain: false,
    }), hasCode('DIFFORMER_BAD_OPTION'));
  }
});

test('removeSentencePiece is fairseq --remove-bpe sentencepiece', () => {
  assert.equal(removeSentencePiece('▁Die ▁Datei ▁» % s « ▁fehlt'), 'Die Datei »%s« fehlt');
  assert.equal(removeSentencePiece(''), '');
});
