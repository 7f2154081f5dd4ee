import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Dictionary, assertSameDictionary } from '../../src/data/dictionary.js';
import { DifformerError } from '../../src/errors.js';

test('specials come first with fairseq ids', () => {
  const d = new Dictionary();
  assert.deepEqual([d.bosIndex, d.padIndex, d.eosIndex, d.unkIndex], [0, 1, 2, 3]);
  assert.deepEqual(d.symbols, ['<s>', '<pad>', '</s>', '<unk>']);
});

test('finalize sorts by count, ties alphabetically, pads to a multiple of 8', () => {
  const d = new Dictionary();
  for (const line of ['b a c', 'a c', 'c d', 'e']) d.addLine(line);
  d.finalize();
  // counts: c 3, a 2, b 1, d 1, e 1 -> 4 specials + 5 = 9 -> padded to 16
  assert.deepEqual(d.symbols.slice(4, 9), ['c', 'a', 'b', 'd', 'e']);
  assert.equal(d.size, 16);
  assert.equal(d.symbols[9], 'madeupword0000');
  assert.equal(d.symbols[15], 'madeupword0006');
  assert.equal(d.toText().split('\n')[0], 'c 3');
  assert.ok(d.toText().includes('madeupword0000 0\n'));
});

test('threshold and nwords (nwords counts the specials, as fairseq)', () => {
  const d = new Dictionary();
  for (const line of ['a a a b b c']) d.addLine(line);
  const t = new Dictionary();
  for (const line of ['a a a b b c']) t.addLine(line);
  d.finalize(2, -1, 1);
  assert.deepEqual(d.symbols.slice(4), ['a', 'b']);
  t.finalize(-1, 5, 1);
  assert.deepEqual(t.symbols.slice(4), ['a']);
});

test('round trip through dict.txt and encodeLine maps unknown words to <unk> and appends EOS', () => {
  const d = new Dictionary();
  d.addLine('hallo welt');
  d.finalize();
  const e = Dictionary.fromText(d.toText());
  assert.deepEqual(e.symbols, d.symbols);
  assert.deepEqual([...e.encodeLine('hallo neu welt')], [e.index('hallo'), 3, e.index('welt'), 2]);
  assert.equal(e.string(e.encodeLine('hallo welt')), 'hallo welt');
});

test('malformed and duplicate lines give DIFFORMER_BAD_DICTIONARY naming file and line', () => {
  assert.throws(
    () => Dictionary.fromText('a 1\nb\n', 'dict.de.txt'),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_DICTIONARY' && /dict\.de\.txt:2/.test(e.message),
  );
  assert.throws(() => Dictionary.fromText('a 1\na 2\n', 'x'), /duplicate word 'a'/);
  // fairseq's overwrite appends a second entry and points the word at it
  const o = Dictionary.fromText('a 1\na 2 #fairseq:overwrite\n');
  assert.deepEqual([o.index('a'), o.counts[5]], [5, 2]);
});

test('assertSameDictionary names both sizes', () => {
  const a = new Dictionary();
  a.addLine('x y');
  a.finalize(-1, -1, 1);
  const b = new Dictionary();
  b.addLine('x');
  b.finalize(-1, -1, 1);
  assert.throws(() => assertSameDictionary(a, b, 'checkpoint'), /6 types vs 5 types/);
});
