/**
 * --init-embeddings / --freeze-embeddings on tiny tables the test writes: word2vec text with a
 * header, GloVe text without one, BERT-style safetensors + vocab.txt (F32 and F16), the
 * SentencePiece/WordPiece matching rules, coverage, the dimension error and freezing; and the
 * difformer-train hook end to end.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { Dictionary } from '../../src/data/dictionary.js';
import { DifformerError } from '../../src/errors.js';
import { ParamStore, normal } from '../../src/nn/params.js';
import { writeSafetensors } from '../../src/train/safetensors.js';
import { applyEmbeddingOptions, candidateKeys, detectConvention, embeddingInitDefaults, readEmbeddingTable } from '../../src/train/init_embeddings.js';
import { runCli, tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());
before(async () => {
  await initBackend({ backend: 'cpu' });
});

function dictOf(tokens: string[]): Dictionary {
  const d = new Dictionary();
  for (const t of tokens) d.addSymbol(t);
  d.finalize(-1, -1, 8);
  return d;
}

/** A store shaped like a model with a shared (or separate) embedding table of width `dim`. */
function store(src: Dictionary, tgt: Dictionary, dim: number, shared: boolean): ParamStore {
  const p = new ParamStore(1);
  p.create('encoder.embed_tokens.weight', [src.size, dim], normal(1), { padRow: src.padIndex });
  if (shared) p.alias('decoder.embed_tokens.weight', 'encoder.embed_tokens.weight');
  else p.create('decoder.embed_tokens.weight', [tgt.size, dim], normal(1), { padRow: tgt.padIndex });
  p.create('decoder.layer.weight', [dim, dim], normal(1));
  return p;
}

const row = (p: ParamStore, name: string, i: number): number[] => Array.from(tf.tidy(() => p.get(name).slice([i, 0], [1, -1]).dataSync()));

test('candidate keys: SentencePiece <-> plain words <-> WordPiece, then as-is, then lowercased; specials', () => {
  assert.deepEqual(candidateKeys('\u2581Haus', 'sentencepiece', 'plain'), ['Haus', '\u2581Haus', 'haus', '\u2581haus']);
  assert.deepEqual(candidateKeys('ing', 'sentencepiece', 'wordpiece'), ['##ing', 'ing']);
  assert.deepEqual(candidateKeys('ing', 'sentencepiece', 'plain'), ['ing']);
  assert.deepEqual(candidateKeys('##ing', 'wordpiece', 'sentencepiece'), ['ing', '##ing']);
  assert.deepEqual(candidateKeys('Haus', 'plain', 'sentencepiece'), ['\u2581Haus', 'Haus', '\u2581haus', 'haus']);
  assert.deepEqual(candidateKeys('</s>', 'plain', 'wordpiece'), ['</s>', '[SEP]']);
  assert.deepEqual(candidateKeys('<unk>', 'wordpiece', 'wordpiece'), ['<unk>', '[UNK]', '<UNK>', 'UNK']);
  assert.equal(detectConvention(['\u2581a', 'b', '\u2581c']), 'sentencepiece');
  assert.equal(detectConvention(['a', '##b', 'c']), 'wordpiece');
  assert.equal(detectConvention(['a', 'b']), 'plain');
});

test('word2vec text with header: rows mapped by string, coverage counted once for a shared table, freezing', async () => {
  const dict = dictOf(['\u2581Haus', '\u2581das', 'er', '\u2581Welt']);
  const file = join(tmp.path, 'vec.txt');
  // header "V d"; word2vec writes a trailing space; 'Welt' only lowercased; '</s>' first as in GoogleNews
  writeFileSync(file, '4 3\n</s> 0.5 0.5 0.5 \nHaus 1 2 3 \ndas -1 -2 -3\nwelt 7 8 9\n');
  const p = store(dict, dict, 3, true);
  const padBefore = row(p, 'encoder.embed_tokens.weight', dict.padIndex);
  const untouched = row(p, 'encoder.embed_tokens.weight', dict.index('er'));
  const report = await applyEmbeddingOptions(p, { ...embeddingInitDefaults, initEmbeddings: file, freezeEmbeddings: true }, { src: dict, tgt: dict });
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.index('\u2581Haus')), [1, 2, 3]);
  assert.deepEqual(row(p, 'decoder.embed_tokens.weight', dict.index('\u2581das')), [-1, -2, -3]);
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.index('\u2581Welt')), [7, 8, 9]);
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.eosIndex), [0.5, 0.5, 0.5]);
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.index('er')), untouched, 'a continuation piece has no plain-word row');
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.padIndex), padBefore, 'pad row never assigned');
  // <s>, </s>, <unk> + 4 tokens = 7 types (pad and madeupword excluded); found: </s>, Haus, das, Welt
  assert.deepEqual(report.tables, [{ name: 'encoder.embed_tokens.weight', sharedWith: ['decoder.embed_tokens.weight'], found: 4, total: 7 }]);
  assert.deepEqual(report.frozen, ['encoder.embed_tokens.weight']);
  assert.equal(p.get('encoder.embed_tokens.weight').trainable, false);
  assert.equal(p.get('decoder.layer.weight').trainable, true);
  assert.equal(p.trainableVariables().length, 1);
  p.dispose();
});

test('GloVe text without header; separate tables get their own dictionaries; dimension mismatch names both', async () => {
  const src = dictOf(['Haus', 'Baum']);
  const tgt = dictOf(['house', 'tree', 'car']);
  const file = join(tmp.path, 'glove.txt');
  writeFileSync(file, 'house 1 1\ntree 2 2\nHaus 3 3\nnew york 4 4\n');
  const p = store(src, tgt, 2, false);
  const report = await applyEmbeddingOptions(p, { ...embeddingInitDefaults, initEmbeddings: file }, { src, tgt });
  assert.deepEqual(report.tables.map((t) => [t.name, t.found, t.total]), [
    ['encoder.embed_tokens.weight', 1, 5],
    ['decoder.embed_tokens.weight', 2, 6],
  ]);
  assert.deepEqual(row(p, 'decoder.embed_tokens.weight', tgt.index('tree')), [2, 2]);
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', src.index('Haus')), [3, 3]);
  assert.equal(p.get('encoder.embed_tokens.weight').trainable, true, 'not frozen without --freeze-embeddings');
  const wrong = store(src, tgt, 4, false);
  await assert.rejects(
    applyEmbeddingOptions(wrong, { ...embeddingInitDefaults, initEmbeddings: file }, { src, tgt }),
    (e: unknown) => e instanceof DifformerError && /has 2-dimensional vectors, but the model's encoder\.embed_tokens\.weight is 4-dimensional/.test(e.message),
  );
  writeFileSync(join(tmp.path, 'broken.txt'), 'a 1 2\nb 1\n');
  await assert.rejects(readEmbeddingTable(join(tmp.path, 'broken.txt')), /broken\.txt:2: expected a token and 2 numbers/);
  p.dispose();
  wrong.dispose();
});

test('BERT-style safetensors (*word_embeddings.weight + vocab.txt): WordPiece rows onto a SentencePiece dictionary, F16', async () => {
  const dir = join(tmp.path, 'bert');
  mkdirSync(dir, { recursive: true });
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'haus', 'Haus', '##er', 'das', '##ing'];
  writeFileSync(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  const dim = 2;
  const values = Float32Array.from({ length: (vocab.length + 1) * dim }, (_, i) => Math.floor(i / dim) + (i % dim) / 4); // row r = [r, r + 0.25]; one padded row
  const half = Uint16Array.from(values, (v) => toHalf(v));
  const tensors = new Map([
    ['bert.embeddings.word_embeddings.weight', { dtype: 'F32' as const, shape: [vocab.length + 1, dim], data: values }],
    ['bert.embeddings.position_embeddings.weight', { dtype: 'F32' as const, shape: [4, dim], data: new Float32Array(4 * dim) }],
  ]);
  writeSafetensors(join(dir, 'model.safetensors'), tensors, {});
  const dict = dictOf(['\u2581Haus', 'er', '\u2581das', 'ing', '\u2581Auto']);
  const p = store(dict, dict, dim, true);
  const report = await applyEmbeddingOptions(p, { ...embeddingInitDefaults, initEmbeddings: join(dir, 'model.safetensors') }, { src: dict, tgt: dict });
  const r = (tok: string) => row(p, 'encoder.embed_tokens.weight', dict.index(tok));
  assert.deepEqual(r('\u2581Haus'), [5, 5.25]); // cased row before the lowercase one
  assert.deepEqual(r('er'), [6, 6.25]); // SentencePiece continuation -> ##er
  assert.deepEqual(r('ing'), [8, 8.25]);
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.unkIndex), [1, 1.25]); // <unk> -> [UNK]
  assert.deepEqual(row(p, 'encoder.embed_tokens.weight', dict.bosIndex), [2, 2.25]); // <s> -> [CLS]
  assert.equal(report.tables[0]!.found, 7); // <s> </s> <unk> Haus er das ing; not Auto
  // F16 export, vocabulary given explicitly, the only 2-D tensor
  const f16 = join(tmp.path, 'emb16.safetensors');
  writeF16(f16, 'emb', [vocab.length + 1, dim], half);
  const t16 = await readEmbeddingTable(f16, { vocab: join(dir, 'vocab.txt') });
  assert.deepEqual(Array.from(t16.vectors.get('##er')!), [6, 6.25]);
  assert.equal(t16.convention, 'wordpiece');
  // a table without vocab.txt next to it
  await assert.rejects(readEmbeddingTable(f16), /needs its vocabulary: .*vocab\.txt not found/);
  p.dispose();
});

/** float32 -> IEEE half for the small exact values used here. */
function toHalf(v: number): number {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(v)));
  const m = Math.round((Math.abs(v) / 2 ** e - 1) * 1024);
  return (v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | m;
}

/** writeSafetensors knows F32/I32/F64 only: an F16 file by hand. */
function writeF16(path: string, name: string, shape: number[], data: Uint16Array): void {
  let header = Buffer.from(JSON.stringify({ [name]: { dtype: 'F16', shape, data_offsets: [0, data.byteLength] } }));
  header = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(path, Buffer.concat([len, header, Buffer.from(data.buffer)]));
}

test('difformer-train --init-embeddings --freeze-embeddings: the rows arrive in the checkpoint unchanged by training', async () => {
  const raw = join(tmp.path, 'cli');
  mkdirSync(raw, { recursive: true });
  const de = ['das Haus', 'der Baum', 'das Auto', 'ein Haus'];
  const en = ['the house', 'the tree', 'the car', 'a house'];
  for (const split of ['train', 'valid']) {
    writeFileSync(join(raw, `${split}.de`), `${de.join('\n')}\n`);
    writeFileSync(join(raw, `${split}.en`), `${en.join('\n')}\n`);
  }
  const bin = join(raw, 'bin');
  const p = runCli('difformer-preprocess', ['-s', 'de', '-t', 'en', '--trainpref', join(raw, 'train'), '--validpref', join(raw, 'valid'), '--destdir', bin, '--joined-dictionary']);
  assert.equal(p.code, 0, p.stderr);
  const vec = (k: number) => Array.from({ length: 64 }, (_, i) => ((k * 64 + i) % 17) / 8 - 1);
  writeFileSync(join(raw, 'vec.txt'), `house ${vec(1).join(' ')}\nHaus ${vec(2).join(' ')}\n`);
  const t = runCli('difformer-train', [
    bin, '--arch', 'transformer_tiny', '--optimizer', 'adam', '--lr', '1e-2', '--max-update', '2', '--batch-size', '2',
    '--save-dir', join(raw, 'ck'), '--no-epoch-checkpoints', '--disable-validation', '--init-embeddings', join(raw, 'vec.txt'), '--freeze-embeddings',
  ]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stderr, /--init-embeddings: found 2 of \d+ dictionary types .* for encoder\.embed_tokens\.weight/);
  assert.match(t.stderr, /--freeze-embeddings: encoder\.embed_tokens\.weight, decoder\.embed_tokens\.weight not trained/);
  const { loadCheckpoint } = await import('../../src/train/checkpoint.js');
  const ck = loadCheckpoint(join(raw, 'ck', 'checkpoint_last.safetensors'));
  const dict = Dictionary.fromText(readFileSync(join(bin, 'dict.en.txt'), 'utf8'));
  const w = ck.weights.get('decoder.embed_tokens.weight')!;
  const at = (tok: string) => Array.from(w.data.slice(dict.index(tok) * 64, (dict.index(tok) + 1) * 64));
  assert.deepEqual(at('house'), Array.from(Float32Array.from(vec(1))));
  assert.deepEqual(at('Haus'), Array.from(Float32Array.from(vec(2))));
});
