/**
 * fairseq-score BLEU (src/metrics/bleu.ts). Expected values are computed by hand in the comments
 * from fairseq's formulas (fairseq/scoring/bleu.py + libbleu.cpp), and the corpus score must equal
 * sacreBLEU with `tokenize='none', smooth_method='none'` on the same whitespace-tokenized text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DifformerError } from '../../src/errors.js';
import {
  fairseqBleu,
  fairseqBleuScore,
  fairseqScoreLines,
  fairseqSentenceStats,
  formatFairseqBleu,
  sacreBleuCorpus,
  sentenceBleuFairseq,
} from '../../src/metrics/index.js';
import { pyFixed } from '../../src/metrics/bleu.js';

const close = (actual: number, expected: number, tol = 0.01): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected} +- ${tol}, got ${actual}`);

// Line 1: sys "the cat sat on the mat" / ref "the cat is on the mat" (6 and 6 tokens)
//   1-grams: the x2, cat, on, mat match -> 5/6
//   2-grams: "the cat", "on the", "the mat" -> 3/5
//   3-grams: "on the mat" -> 1/4;  4-grams: none -> 0/3
// Line 2: sys "a b c d" / ref "a b c d e": 4/4, 3/3, 2/2, 1/1; syslen 4, reflen 5
// Corpus: match 9/6/3/1 of 10/8/6/4 -> 90.0/75.0/50.0/25.0; syslen 10, reflen 11
//   BP = exp(1 - 11/10) = 0.904837; geo mean = (0.9*0.75*0.5*0.25)^(1/4) = 0.538956
//   BLEU4 = 100 * 0.904837 * 0.538956 = 48.77; ratio = 10/11 = 0.909
//   BLEU2 = 100 * 0.904837 * sqrt(0.9*0.75) = 74.34
const SYS = ['the cat sat on the mat', 'a b c d'];
const REF = ['the cat is on the mat', 'a b c d e'];

test('corpus statistics are the hand-counted n-gram matches', () => {
  const s = fairseqBleu(SYS, REF);
  assert.deepEqual(s, { reflen: 11, predlen: 10, match: [9, 6, 3, 1], count: [10, 8, 6, 4] });
  close(fairseqBleuScore(s), 100 * Math.exp(-0.1) * Math.pow(0.9 * 0.75 * 0.5 * 0.25, 0.25), 1e-9);
});

test('formatFairseqBleu matches Scorer.result_string exactly', () => {
  const s = fairseqBleu(SYS, REF);
  assert.equal(formatFairseqBleu(s), 'BLEU4 = 48.77, 90.0/75.0/50.0/25.0 (BP=0.905, ratio=0.909, syslen=10, reflen=11)');
  assert.equal(formatFairseqBleu(s, 2), 'BLEU2 = 74.34, 90.0/75.0 (BP=0.905, ratio=0.909, syslen=10, reflen=11)');
  assert.deepEqual(fairseqScoreLines(SYS, REF), ['BLEU4 = 48.77, 90.0/75.0/50.0/25.0 (BP=0.905, ratio=0.909, syslen=10, reflen=11)']);
});

test('a zero precision gives BLEU 0, printed as 0.00', () => {
  // Line 1 alone has no matching 4-gram.
  assert.equal(
    formatFairseqBleu(fairseqBleu([SYS[0]!], [REF[0]!])),
    'BLEU4 = 0.00, 83.3/60.0/25.0/0.0 (BP=1.000, ratio=1.000, syslen=6, reflen=6)',
  );
});

test('fairseq BLEU equals sacreBLEU with tokenize none and smooth none on tokenized text', () => {
  const corpora: [string[], string[]][] = [
    [SYS, REF],
    [
      ['the quick brown fox jumps over the lazy dog', 'a man a plan a canal panama', 'to be or not to be that is'],
      ['the fast brown fox jumped over the lazy dog', 'a man with a plan a canal in panama', 'to be or not to be that is the question'],
    ],
    [
      ['le chat est sur le tapis .', 'il y a un chat sur le tapis rouge .'],
      ['le chat est assis sur le tapis .', 'un chat est sur le tapis .'],
    ],
  ];
  for (const [sys, ref] of corpora) {
    const ours = fairseqBleu(sys, ref);
    const sacre = sacreBleuCorpus(sys, [ref], { tokenize: 'none', smooth: 'none' });
    close(fairseqBleuScore(ours), sacre.score, 1e-9);
    assert.deepEqual(sacre.counts, ours.match);
    assert.deepEqual(sacre.totals, ours.count);
    // fairseq's line can also be printed from sacreBLEU-shaped counts.
    assert.equal(formatFairseqBleu(sacre), formatFairseqBleu(ours));
  }
});

test('--ignore-case lowercases both sides', () => {
  assert.equal(fairseqBleu(['The Cat'], ['the cat']).match[0], 0);
  assert.deepEqual(fairseqBleu(['The Cat'], ['the cat'], { ignoreCase: true }).match, [2, 1, 0, 0]);
});

test('<unk> in the reference never matches', () => {
  // ref "<unk> b": the unk becomes -999, so only "b" can match: 1/2 unigrams, 0/1 bigrams.
  assert.deepEqual(fairseqBleu(['<unk> b'], ['<unk> b']).match, [1, 0, 0, 0]);
  assert.deepEqual(fairseqBleu(['UNK b'], ['UNK b'], { unk: 'UNK' }).match, [1, 0, 0, 0]);
  // With another unk symbol, '<unk>' is an ordinary word.
  assert.deepEqual(fairseqBleu(['<unk> b'], ['<unk> b'], { unk: 'UNK' }).match, [2, 1, 0, 0]);
});

test('an empty line counts as one </s> token, as libbleu trims all but the first', () => {
  assert.deepEqual(fairseqBleu(['', 'a'], ['', 'a']), { reflen: 2, predlen: 2, match: [2, 0, 0, 0], count: [2, 0, 0, 0] });
});

test('whitespace runs are one separator (Dictionary.encode_line)', () => {
  assert.deepEqual(fairseqBleu(['  a \t b\u00a0c  '], ['a b c']).match, [3, 2, 1, 0]);
});

test('sentence BLEU uses one_init: add-one smoothing for orders 2..4 only', () => {
  // sys/ref of line 1: matches 5, 3+1, 1+1, 0+1 of 6, 5+1, 4+1, 3+1 -> (5/6 * 4/6 * 2/5 * 1/4)^(1/4)
  const expected = 100 * Math.pow((5 / 6) * (4 / 6) * (2 / 5) * (1 / 4), 0.25);
  assert.deepEqual(fairseqSentenceStats(SYS[0]!, REF[0]!), { reflen: 6, predlen: 6, match: [5, 4, 2, 1], count: [6, 6, 5, 4] });
  close(sentenceBleuFairseq(SYS[0]!, REF[0]!), expected, 1e-9);
  close(sentenceBleuFairseq(SYS[0]!, REF[0]!, { order: 4, ignoreCase: true }), expected, 1e-9);
  // No unigram match: order 1 has no smoothing, so BLEU is 0.
  assert.equal(sentenceBleuFairseq('x y', 'a b'), 0);
  assert.deepEqual(fairseqScoreLines(SYS, REF, { sentenceBleu: true }), [
    '0 BLEU4 = 48.55, 83.3/66.7/40.0/25.0 (BP=1.000, ratio=1.000, syslen=6, reflen=6)',
    // line 2: (4/4 * 4/4 * 3/3 * 2/2) = 1, BP = exp(1 - 5/4) = 0.7788
    '1 BLEU4 = 77.88, 100.0/100.0/100.0/100.0 (BP=0.779, ratio=0.800, syslen=4, reflen=5)',
  ]);
});

test('numbers are rounded like Python format(), ties to even', () => {
  assert.equal(pyFixed(0.125, 2), '0.12');
  assert.equal(pyFixed(0.375, 2), '0.38');
  assert.equal(pyFixed(1.0625, 3), '1.062');
  assert.equal(pyFixed(2.5, 0), '2');
  assert.equal(pyFixed(48.7668, 2), '48.77');
  // ratio 17/16 = 1.0625 exactly: Python prints 1.062 where toFixed would give 1.063.
  const sys = Array.from({ length: 17 }, (_, i) => `w${i}`).join(' ');
  const ref = Array.from({ length: 16 }, (_, i) => `w${i}`).join(' ');
  assert.match(formatFairseqBleu(fairseqBleu([sys], [ref])), /ratio=1\.062, syslen=17, reflen=16\)$/);
});

test('bad input raises DifformerError naming both counts', () => {
  assert.throws(
    () => fairseqBleu(['a', 'b'], ['a']),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_LINE_COUNT_MISMATCH' && /2 lines/.test(e.message) && /has 1/.test(e.message),
  );
  assert.throws(() => fairseqBleu([], []), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_EMPTY_CORPUS');
  assert.throws(() => fairseqBleu(['a'], ['a'], { order: 5 }), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION');
  assert.throws(() => formatFairseqBleu(fairseqBleu(['a'], ['a']), 0), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION');
});
