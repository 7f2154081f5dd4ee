import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IndexedDataset, IndexedDatasetBuilder } from '../../src/data/indexed_dataset.js';
import { tempDir } from '../helpers.js';

test('writes fairseq mmap .idx/.bin bytes and reads them back', () => {
  const tmp = tempDir();
  try {
    const prefix = join(tmp.path, 'train.de-en.de');
    const b = new IndexedDatasetBuilder(prefix, 1000);
    b.add([5, 6, 2]);
    b.add([2]);
    b.add([7, 8, 9, 10, 2]);
    b.finish();
    const idx = readFileSync(`${prefix}.idx`);
    // magic, version 1, dtype uint16 (8), count 3, sizes, byte offsets
    assert.equal(idx.subarray(0, 9).toString('latin1'), 'MMIDIDX\x00\x00');
    assert.equal(idx.readBigUInt64LE(9), 1n);
    assert.equal(idx.readUInt8(17), 8);
    assert.equal(idx.readBigUInt64LE(18), 3n);
    assert.deepEqual([idx.readInt32LE(26), idx.readInt32LE(30), idx.readInt32LE(34)], [3, 1, 5]);
    assert.deepEqual([idx.readBigInt64LE(38), idx.readBigInt64LE(46), idx.readBigInt64LE(54)], [0n, 6n, 8n]);
    assert.equal(idx.length, 62);
    assert.equal(readFileSync(`${prefix}.bin`).length, 18);
    const ds = new IndexedDataset(prefix);
    assert.equal(ds.length, 3);
    assert.deepEqual([...ds.get(2)], [7, 8, 9, 10, 2]);
    assert.deepEqual([...ds.sizes], [3, 1, 5]);
  } finally {
    tmp.cleanup();
  }
});

test('int32 for vocabularies of 65500 types or more', () => {
  const tmp = tempDir();
  try {
    const prefix = join(tmp.path, 'x');
    const b = new IndexedDatasetBuilder(prefix, 70000);
    b.add([69999, 2]);
    b.finish();
    assert.equal(readFileSync(`${prefix}.idx`).readUInt8(17), 4);
    assert.deepEqual([...new IndexedDataset(prefix).get(0)], [69999, 2]);
  } finally {
    tmp.cleanup();
  }
});
