/**
 * sacreBLEU compatibility (src/metrics/sacrebleu.ts). Expected numbers are the published ones of
 * sacreBLEU's own test suite (github.com/mjpost/sacrebleu):
 *   test/test_bleu.py          corpus BLEU per tokenizer/smoothing, max n-gram order, raw
 *                              statistics, compute_bleu scoring, effective order, floor offsets
 *   test/test_sentence_bleu.py sentence BLEU of the Romanian example of issue #98 for every
 *                              smoothing, tokenizer (13a, none, intl, char) and lowercasing
 * sacreBLEU has no unit tests of the 13a/intl tokenizer output itself, so those cases are derived
 * by hand from the mteval-v13a / v14 rules quoted in the comments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DifformerError } from '../../src/errors.js';
import {
  SACREBLEU_VERSION,
  computeSacreBleu,
  formatSacreBleu,
  sacreBleuCorpus,
  sacreBleuLines,
  sacreBleuSignature,
  sacreSentenceBleu,
  sacreTokenize,
  tokenize13a,
  tokenizeIntl,
  type SacreBleuOptions,
} from '../../src/metrics/index.js';

const close = (actual: number, expected: number, tol = 0.01): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected} +- ${tol}, got ${actual}`);

// test_bleu.py: README example; refs[k][i] is the k-th reference of line i.
const REFS = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const HYPS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

test('corpus BLEU matches test_bleu.py test_corpus_bleu_cases', () => {
  const cases: [string[], SacreBleuOptions, number][] = [
    [HYPS, {}, 48.530827],
    [['', '', ''], {}, 0.0],
    [HYPS, { tokenize: 'none' }, 49.1919566],
    [HYPS, { tokenize: '13a' }, 48.530827],
    [HYPS, { tokenize: 'intl' }, 43.91623493],
    [HYPS, { smooth: 'none' }, 48.530827],
  ];
  for (const [hyps, opts, expected] of cases) close(sacreBleuCorpus(hyps, REFS, opts).score, expected, 1e-6);
});

test('max n-gram order matches test_bleu.py test_bleu_max_order', () => {
  const expected = ['77.65', '60.50', '53.93', '48.53', '46.14', '43.28'];
  expected.forEach((e, i) => assert.equal(sacreBleuCorpus(HYPS, REFS, { maxNgramOrder: i + 1 }).score.toFixed(2), e));
});

/** sacrebleu.raw_corpus_bleu: floor smoothing, tokenize none, effective order. */
const raw = (hyps: string[], refs: string[][], floor?: number) =>
  sacreBleuCorpus(hyps, refs, { tokenize: 'none', smooth: 'floor', effectiveOrder: true, ...(floor === undefined ? {} : { smoothValue: floor }) });

test('raw corpus BLEU, statistics and effective order match test_bleu.py', () => {
  close(raw(['this is a test', 'another test'], [['ref1', 'ref2']], 0.01).score / 100, 0.0, 1e-8);
  close(raw(['this is a test'], [['this is a test']], 0.01).score / 100, 1.0, 1e-8);
  close(raw(['this is a fest'], [['this is a test']], 0.01).score / 100, 0.223606797749979, 1e-8);
  // test_case_effective_order
  close(raw(['test'], [['a test']], 0.01).score / 100, 0.3678794411714425, 1e-8);
  close(raw(['a test'], [['a test']], 0.01).score / 100, 1.0, 1e-8);
  close(raw(['a little test'], [['a test']], 0.01).score / 100, 0.03218297948685433, 1e-8);
  // test_case_statistics
  const st = raw(['am I am a character sequence'], [['I am a symbol string sequence a a']], 0.01);
  assert.deepEqual(st.counts, [4, 2, 1, 0]);
  assert.deepEqual(st.totals, [6, 5, 4, 3]);
  // test_case_offset: floor 0 gives 0, the default floor (0.1) gives 0.1555722182
  close(raw(['am I am a character sequence'], [['I am a symbol string sequence a a']], 0.0).score / 100, 0, 1e-8);
  close(raw(['am I am a character sequence'], [['I am a symbol string sequence a a']]).score / 100, 0.1555722182, 1e-8);
});

test('compute_bleu from statistics matches test_bleu.py scoring and degenerate cases', () => {
  close(computeSacreBleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score / 100, 0.8375922397, 1e-8);
  const degenerate: [number[], number[], number, number, number][] = [
    [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
    [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
    [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
    [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
  ];
  for (const [c, t, sysLen, refLen, offset] of degenerate) {
    assert.equal(computeSacreBleu(c, t, sysLen, refLen, { smooth: 'floor', smoothValue: offset }).score, 0);
  }
});

// test_sentence_bleu.py, example from sacreBLEU issue #98
const SENT_REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
const SENT_SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';

test('sentence BLEU matches test_sentence_bleu.py for every smoothing, tokenizer and case', () => {
  const cases: [SacreBleuOptions, number][] = [
    [{ smooth: 'exp' }, 8.493],
    [{ smooth: 'none' }, 0.0],
    [{ smooth: 'floor' }, 4.51688],
    [{ smooth: 'floor', smoothValue: 0.1 }, 4.51688],
    [{ smooth: 'floor', smoothValue: 0.5 }, 10.1],
    [{ smooth: 'add-k' }, 14.882],
    [{ smooth: 'add-k', smoothValue: 1 }, 14.882],
    [{ smooth: 'add-k', smoothValue: 2 }, 21.389],
    [{ tokenize: 'none' }, 7.347],
    [{ tokenize: 'intl' }, 8.493],
    [{ tokenize: 'char' }, 40.8759],
    [{ tokenize: 'char', lowercase: true }, 42.0267],
  ];
  for (const [opts, expected] of cases) close(sacreSentenceBleu(SENT_SYS, [SENT_REF], opts).score, expected, 1e-3);
  // Issue #141: no match at all is 0 whatever the smoothing.
  for (const smooth of ['exp', 'none', 'floor', 'add-k'] as const) {
    assert.equal(sacreSentenceBleu('this is a cat', ['okay thanks'], { smooth }).score, 0);
  }
});

test('13a tokenizer follows mteval-v13a', () => {
  // Symbols are split; period/comma only when not next to a digit; a dash only after a digit.
  assert.equal(tokenize13a("I'm a student."), "I'm a student .");
  assert.equal(tokenize13a('Hello, world! 3.14 1,000 and 1990-2000 e-mail'), 'Hello , world ! 3.14 1,000 and 1990 - 2000 e-mail');
  // The padding spaces make a sentence-final period after a number split too.
  assert.equal(tokenize13a('It was 1990.'), 'It was 1990 .');
  // &quot; &amp; &lt; &gt; are unescaped (in that order) before splitting; <skipped> is dropped.
  assert.equal(tokenize13a('&quot;a&quot; b&amp;c &lt;d&gt; <skipped>e'), '" a " b & c < d > e');
  assert.equal(tokenize13a('x&amp;lt;y'), 'x < y');
  assert.equal(tokenize13a('(a) [b] {c} $5 50% #1 @x a/b'), '( a ) [ b ] { c } $ 5 50 % # 1 @ x a / b');
  assert.equal(tokenize13a('  many   spaces\there  '), 'many spaces here');
});

test('intl tokenizer follows mteval-v14 international tokenization', () => {
  assert.equal(tokenizeIntl('"this," she   said, is an example.'), '" this , " she said , is an example .');
  // Punctuation between digits stays; a final period after a number is kept (upstream quirk).
  assert.equal(tokenizeIntl('Pi is 3.14, e is 2,71 in 1990.'), 'Pi is 3.14 , e is 2,71 in 1990.');
  // Unicode punctuation (\p{P}) and symbols (\p{S}) are split, letters of any script are not.
  assert.equal(tokenizeIntl('«Привет», 5€ zahăr—alb'), '« Привет » , 5 € zahăr — alb');
});

test('preprocessing lowercases, right-strips and tokenizes like BLEU._preprocess_segment', () => {
  assert.equal(sacreTokenize('Hello, World.  ', '13a', true), 'hello , world .');
  assert.equal(sacreTokenize('a  b ', 'none'), 'a  b');
  assert.equal(sacreTokenize('ab c', 'char'), 'a b   c');
});

test('signature has sacreBLEU 2.x fields and order', () => {
  assert.equal(sacreBleuSignature(), `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:${SACREBLEU_VERSION}`);
  assert.equal(SACREBLEU_VERSION, '2.4.0');
  assert.equal(
    sacreBleuSignature({ nrefs: 2, lowercase: true, tokenize: 'intl', smooth: 'floor' }),
    'nrefs:2|case:lc|eff:no|tok:intl|smooth:floor[0.10]|version:2.4.0',
  );
  assert.equal(sacreBleuSignature({ smooth: 'add-k', smoothValue: 2, effectiveOrder: true }), 'nrefs:1|case:mixed|eff:yes|tok:13a|smooth:add-k[2.00]|version:2.4.0');
  assert.equal(sacreBleuSignature({ smooth: 'none', tokenize: 'none' }), 'nrefs:1|case:mixed|eff:no|tok:none|smooth:none|version:2.4.0');
});

test('score line has the BLEUScore.format() layout', () => {
  const r = sacreBleuCorpus(HYPS, REFS);
  // 13a: hyp_len 17, closest ref_len 18, precisions 14/17, 7/14, 5/11, 3/8
  assert.equal(formatSacreBleu(r), 'BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)');
  assert.deepEqual(sacreBleuLines(HYPS, REFS), [
    'BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0 = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)',
  ]);
  assert.deepEqual(sacreBleuLines(HYPS, REFS, { inlineSignature: false, width: 1 }), [
    'BLEU = 48.5 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)',
    'nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0',
  ]);
  assert.deepEqual(sacreBleuLines(HYPS, REFS, { scoreOnly: true }), ['48.53']);
});

test('empty references are dropped per line, giving nrefs:var', () => {
  const r = sacreBleuCorpus(['a b c d', 'e f g h'], [['a b c d', 'e f g h'], ['a b', '']], { tokenize: 'none' });
  assert.equal(r.nrefs, 'var');
  close(r.score, 100, 1e-9);
});

test('bad input raises DifformerError', () => {
  assert.throws(
    () => sacreBleuCorpus(['a', 'b'], [['a']]),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_LINE_COUNT_MISMATCH' && /2 lines/.test(e.message) && /has 1/.test(e.message),
  );
  assert.throws(() => sacreBleuCorpus([], [[]]), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_EMPTY_CORPUS');
  assert.throws(() => sacreBleuCorpus(['a'], [['']]), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_DATA');
  const bad = { tokenize: 'zh' } as unknown as SacreBleuOptions;
  assert.throws(() => sacreBleuCorpus(['a'], [['a']], bad), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION');
});
