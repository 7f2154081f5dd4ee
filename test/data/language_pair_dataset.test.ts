import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Dictionary } from '../../src/data/dictionary.js';
import { InMemoryDataset } from '../../src/data/indexed_dataset.js';
import { LanguagePairDataset, type BatchingOptions } from '../../src/data/language_pair_dataset.js';

// gettext-style pairs (whitespace-tokenized); the last source is a long package description
const SRC = [
  'Datei nicht gefunden',
  'Keine Verbindung zum Server möglich',
  'Speichern',
  'Dieses Paket enthält die Dokumentation der Bibliothek im HTML-Format sowie Beispiele für die Verwendung',
];
const TGT = ['File not found', 'Could not connect to the server', 'Save', 'library documentation'];

function dataset(opts: ConstructorParameters<typeof LanguagePairDataset>[4] = {}): { ds: LanguagePairDataset; dict: Dictionary } {
  const dict = new Dictionary();
  for (const l of [...SRC, ...TGT]) dict.addLine(l);
  dict.finalize();
  const enc = (lines: string[]): InMemoryDataset => new InMemoryDataset(lines.map((l) => dict.encodeLine(l)));
  return { ds: new LanguagePairDataset(enc(SRC), enc(TGT), dict, dict, opts), dict };
}

const noLimits: BatchingOptions = { maxTokens: undefined, batchSize: undefined, requiredBatchSizeMultiple: 1, maxSourcePositions: 1024, maxTargetPositions: 1024 };

test('collate pads, appends EOS and builds prev_output_tokens (EOS moved to the front)', () => {
  const { ds, dict } = dataset();
  const b = ds.collate([0, 2]);
  assert.equal(b.srcLen, 4); // "Datei nicht gefunden </s>"
  assert.equal(dict.string(b.srcTokens.subarray(0, 4)), 'Datei nicht gefunden');
  assert.deepEqual(Array.from(b.srcLengths), [4, 2]);
  assert.equal(b.srcTokens[4 + 1], dict.eosIndex);
  assert.equal(b.srcTokens[4 + 2], dict.padIndex);
  assert.deepEqual(Array.from(b.target.subarray(0, 4)), [dict.index('File'), dict.index('not'), dict.index('found'), dict.eosIndex]);
  assert.deepEqual(Array.from(b.prevOutputTokens.subarray(0, 4)), [dict.eosIndex, dict.index('File'), dict.index('not'), dict.index('found')]);
  assert.equal(b.ntokens, 4 + 2);
});

test('batches keep (longest sentence) x (sentences) <= --max-tokens', () => {
  const { ds } = dataset();
  const batches = ds.batches([0, 1, 2, 3], { ...noLimits, maxTokens: 16 });
  // sorted by target length: 2 (2 tokens), 3 (3, source 15), 0 (4), 1 (6); the long source
  // cannot share a batch, 0 and 1 cost 6 x 2
  assert.deepEqual(batches, [[2], [3], [0, 1]]);
  assert.deepEqual(ds.batches([0, 1, 2, 3], { ...noLimits, maxTokens: 16, batchSize: 1 }), [[2], [3], [0], [1]]);
});

test('a pair longer than --max-tokens is skipped and counted by validIndices, and never dropped unseen by batches', () => {
  const { ds } = dataset();
  // the long description (15 source tokens) fits the positions but not 12 tokens per batch
  const limits = { ...noLimits, maxTokens: 12 };
  assert.equal(ds.sampleTokens(3), 15);
  assert.deepEqual(ds.validIndices(limits, true), { kept: [0, 1, 2], skipped: 1, overMaxTokens: 1 });
  assert.deepEqual(ds.batches([0, 1, 2], limits), [[2, 0], [1]]);
  assert.throws(() => ds.batches([0, 1, 2, 3], limits), /sentence 3 has 15 tokens .* more than --max-tokens 12/);
});

test('sources over --max-source-positions are skipped, or cut with --truncate-source', () => {
  const long = 3;
  const { ds: plain } = dataset({ prependBos: true });
  assert.equal(plain.srcSize(long), 14 + 1 + 1); // 14 words, BOS, EOS
  assert.deepEqual(plain.validIndices({ ...noLimits, maxSourcePositions: 8 }, true), { kept: [0, 1, 2], skipped: 1, overMaxTokens: 0 });

  const { ds, dict } = dataset({ prependBos: true, truncateSourceTo: 8 });
  assert.deepEqual(ds.validIndices({ ...noLimits, maxSourcePositions: 8 }, true), { kept: [0, 1, 2, 3], skipped: 0, overMaxTokens: 0 });
  assert.equal(ds.srcSize(long), 8);
  assert.equal(ds.srcSize(0), 5); // short sources are untouched
  const b = ds.collate([long]);
  assert.equal(b.srcLen, 8);
  const row = Array.from(b.srcTokens);
  assert.equal(row[0], dict.bosIndex);
  assert.equal(row[7], dict.eosIndex); // EOS survives the cut
  assert.equal(dict.string(row.slice(1, 7)), 'Dieses Paket enthält die Dokumentation der');
  assert.equal(dict.string(b.target.subarray(0, b.tgtLengths[0]!), { keepBos: false }), 'library documentation');
  assert.throws(() => dataset({ prependBos: true, truncateSourceTo: 2 }), /cannot truncate/);
});
