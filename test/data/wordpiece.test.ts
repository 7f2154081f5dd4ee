/**
 * BERT WordPiece: the known tokenizations of google-research/bert's tokenization_test.py and
 * HuggingFace's test_tokenization_bert.py, the ' ##' post-processing, and a preprocess run with
 * --tokenizer wordpiece on a vocabulary the test writes.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { basicTokenize, isPunctuation, stripAccents, WordpieceTokenizer } from '../../src/data/wordpiece.js';
import { postProcess } from '../../src/data/post_process.js';
import { runPreprocess, preprocessDefaults } from '../../src/cli/preprocess.js';
import { Dictionary } from '../../src/data/dictionary.js';
import { IndexedDataset } from '../../src/data/indexed_dataset.js';
import { DifformerError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

// tokenization_test.py's vocabulary
const CLASSIC = ['[UNK]', '[CLS]', '[SEP]', 'want', '##want', '##ed', 'wa', 'un', 'runn', '##ing', ','];

test('wordpiece: greedy longest-match-first with ## continuations, [UNK] for the whole word', () => {
  const wp = new WordpieceTokenizer(CLASSIC);
  assert.deepEqual(wp.tokenize(''), []);
  assert.deepEqual(wp.tokenize('unwanted running'), ['un', '##want', '##ed', 'runn', '##ing']);
  assert.deepEqual(wp.tokenize('unwantedX running'), ['[UNK]', 'runn', '##ing']);
  // the docs' example: longest first, so 'un' + '##aff' + '##able' even though '##a' exists
  const aff = new WordpieceTokenizer(['un', '##a', '##af', '##aff', '##able', '##ab', '##le']);
  assert.deepEqual(aff.tokenize('unaffable'), ['un', '##aff', '##able']);
  // > 100 characters: unknown without trying
  assert.deepEqual(new WordpieceTokenizer(['a', '##a']).tokenize('a'.repeat(101)), ['[UNK]']);
  assert.equal(new WordpieceTokenizer(['a', '##a']).tokenize('a'.repeat(100)).length, 100);
  // fairseq's unknown symbol for data-bins
  assert.deepEqual(new WordpieceTokenizer(CLASSIC, { unkToken: '<unk>' }).tokenize('xyz , [UNK]'), ['<unk>', ',', '<unk>']);
});

test('basic tokenizer: whitespace, punctuation, lowercase, accents, CJK, control characters', () => {
  assert.deepEqual(basicTokenize(' \tHeLLo!how  \n Are yoU?  ', { lowercase: true, stripAccents: undefined }), ['hello', '!', 'how', 'are', 'you', '?']);
  assert.deepEqual(basicTokenize('H\u00E9llo', { lowercase: true, stripAccents: undefined }), ['hello']);
  assert.deepEqual(basicTokenize(' \tHäLLo!how  \n Are yoU?  ', { lowercase: true, stripAccents: false }), ['hällo', '!', 'how', 'are', 'you', '?']);
  assert.deepEqual(basicTokenize(' \tHäLLo!how  \n Are yoU?  ', { lowercase: false, stripAccents: true }), ['HaLLo', '!', 'how', 'Are', 'yoU', '?']);
  assert.deepEqual(basicTokenize(' \tHeLLo!how  \n Are yoU?  ', { lowercase: false, stripAccents: undefined }), ['HeLLo', '!', 'how', 'Are', 'yoU', '?']);
  assert.deepEqual(basicTokenize('ah\u535A\u63A8zz', { lowercase: false, stripAccents: undefined }), ['ah', '\u535A', '\u63A8', 'zz']);
  assert.deepEqual(basicTokenize('a\u0000b\u200Bc\uFFFDd e\u00A0f', { lowercase: false, stripAccents: undefined }), ['abcd', 'e', 'f']); // NUL, ZWSP (Cf), U+FFFD dropped; NBSP splits
  assert.deepEqual(basicTokenize("don't [UNK] $5.00", { lowercase: true, stripAccents: undefined }), ['don', "'", 't', '[UNK]', '$', '5', '.', '00']);
  assert.ok(isPunctuation('-') && isPunctuation('$') && isPunctuation('`') && isPunctuation('¿') && !isPunctuation('a') && !isPunctuation(' '));
  assert.equal(stripAccents('Ångström façade'), 'Angstrom facade');
  // decomposed input tokenizes like composed input
  assert.deepEqual(basicTokenize('Cafe\u0301', { lowercase: false, stripAccents: false }), ['Café']);
});

test("postProcess 'wordpiece' joins ' ##' pieces", () => {
  assert.equal(postProcess('un ##want ##ed runn ##ing , ok', 'wordpiece'), 'unwanted running , ok');
});

test('preprocess --tokenizer wordpiece: the dictionary holds the pieces seen in training, valid unknowns become <unk>', async () => {
  const raw = join(tmp.path, 'raw');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(raw, { recursive: true });
  writeFileSync(join(raw, 'train.de'), 'Unwanted running!\nwant running\n');
  writeFileSync(join(raw, 'train.en'), 'wanted , running\nun want\n');
  writeFileSync(join(raw, 'valid.de'), 'RUNNING xyz\n');
  writeFileSync(join(raw, 'valid.en'), 'want\n');
  const vocab = join(tmp.path, 'vocab.txt');
  writeFileSync(vocab, `${[...CLASSIC, '!', 'never', '##seen'].join('\n')}\n`);
  const destdir = join(tmp.path, 'bin');
  const base = { ...preprocessDefaults, sourceLang: 'de', targetLang: 'en', trainpref: join(raw, 'train'), validpref: join(raw, 'valid'), joinedDictionary: true };
  await runPreprocess({ ...base, destdir, tokenizer: 'wordpiece', wordpieceVocab: vocab, lowercase: true });
  const dict = Dictionary.fromText(readFileSync(join(destdir, 'dict.de.txt'), 'utf8'));
  const seen = dict.symbols.slice(dict.nspecial).filter((s) => !s.startsWith('madeupword')).sort();
  assert.deepEqual(seen, ['!', ',', '##ed', '##ing', '##want', 'runn', 'un', 'want'].sort());
  assert.ok(!dict.has('never') && !dict.has('[UNK]') && !dict.has('wa'), 'unseen vocabulary entries are left out');
  const valid = new IndexedDataset(join(destdir, 'valid.de-en.de'));
  assert.equal(dict.string(valid.get(0)), 'runn ##ing <unk>');
  const train = new IndexedDataset(join(destdir, 'train.de-en.de'));
  assert.equal(dict.string(train.get(0)), 'un ##want ##ed runn ##ing !');
  // user errors
  await assert.rejects(runPreprocess({ ...base, destdir: join(tmp.path, 'x'), tokenizer: 'wordpiece' }), (e: unknown) => e instanceof DifformerError && /--wordpiece-vocab/.test(e.message));
  await assert.rejects(runPreprocess({ ...base, destdir: join(tmp.path, 'y'), tokenizer: 'wordpiece', wordpieceVocab: vocab, spmVocabSize: 100 }), /exclude each other/);
});
