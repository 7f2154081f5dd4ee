/** The summarization task end to end on real Debian descriptions: ROUGE lines before BLEU4. */
import assert from 'node:assert/strict';
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
