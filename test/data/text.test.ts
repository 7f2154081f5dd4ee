import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamLines } from '../../src/data/text.js';
import { DifformerError } from '../../src/errors.js';

async function collect(chunks: Uint8Array[]): Promise<string[]> {
  async function* gen(): AsyncGenerator<Uint8Array> {
    for (const c of chunks) yield c;
  }
  const out: string[] = [];
  for await (const l of streamLines(gen())) out.push(l);
  return out;
}

test('streamLines: lines split across chunks, multi-byte characters cut in two, CRLF, no final newline', async () => {
  const bytes = Buffer.from('Größe ändern\r\nDatei öffnen\n\nletzte', 'utf8');
  // cut inside "ö" (2 bytes) and between CR and LF
  const cuts = [3, bytes.indexOf(0x0a), bytes.indexOf(Buffer.from('ö', 'utf8'), 15) + 1];
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    chunks.push(bytes.subarray(at, c));
    at = c;
  }
  assert.deepEqual(await collect(chunks), ['Größe ändern', 'Datei öffnen', '', 'letzte']);
  assert.deepEqual(await collect([Buffer.from('a\nb\n')]), ['a', 'b']);
  assert.deepEqual(await collect([]), []);
  // a BOM is dropped at the start of the stream only, as the whole-file reader does
  assert.deepEqual(await collect([Buffer.from('\uFEFFeins\n'), Buffer.from('\uFEFFzwei\n')]), ['eins', '\uFEFFzwei']);
});

test('streamLines: invalid UTF-8 is an error naming the line', async () => {
  const bad = Buffer.concat([Buffer.from('gut\nauch gut\n'), Buffer.from([0x66, 0xff, 0x0a]), Buffer.from('nie gelesen\n')]);
  await assert.rejects(collect([bad.subarray(0, 5), bad.subarray(5)]), (e: unknown) => e instanceof DifformerError && /stdin: invalid UTF-8 at line 3/.test(e.message));
});
