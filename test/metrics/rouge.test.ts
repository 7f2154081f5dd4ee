/**
 * rouge-score compatibility (src/metrics/rouge.ts, src/metrics/porter.ts). Expected values are
 * the published ones of google-research/google-research rouge/:
 *   rouge_scorer_test.py  P/R/F for small strings and against ROUGE-1.5.5 on lines 1-2 of
 *                         testdata/target.txt and testdata/prediction.txt (with/without stemming),
 *                         rougeLsum on testdata/pyrouge_files/{target,prediction}_multi.0.txt
 *   tokenize_test.py, tokenizers_test.py  tokenizer output (with and without the stemmer)
 * and for the stemmer, NLTK's PorterStemmer docstring example and its test_stem.py 'oed' case.
 * Note rouge-score's argument order is score(target, prediction); ours is rougePair(hyp, ref).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DifformerError } from '../../src/errors.js';
import { formatRouge, porterStem, rougeLines, rougePair, rougeScores, rougeTokenize, type RougeScore, type RougeType } from '../../src/metrics/index.js';

const close = (actual: number, expected: number, tol = 1e-5): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected} +- ${tol}, got ${actual}`);

function assertScore(s: RougeScore | undefined, precision: number, recall: number, fmeasure: number, tol = 1e-5): void {
  assert.ok(s);
  close(s.precision, precision, tol);
  close(s.recall, recall, tol);
  close(s.fmeasure, fmeasure, tol);
}

// testdata/target.txt and testdata/prediction.txt, lines 1 and 2 (random strings).
const TARGETS = [
  "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n",
  "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n",
];
const PREDICTIONS = [
  "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n",
  "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n",
];

test('tokenizer matches tokenize_test.py and tokenizers_test.py', () => {
  assert.deepEqual(rougeTokenize('one Two three'), ['one', 'two', 'three']);
  assert.deepEqual(rougeTokenize('one\n Two \nthree'), ['one', 'two', 'three']);
  assert.deepEqual(rougeTokenize('this is a test'), ['this', 'is', 'a', 'test']);
  assert.deepEqual(rougeTokenize('the friends had a meeting', true), ['the', 'friend', 'had', 'a', 'meet']);
  // Non-[a-z0-9] characters separate tokens; words of <= 3 letters are never stemmed.
  assert.deepEqual(rougeTokenize("Don't stop-believing, naïve 42!", true), ['don', 't', 'stop', 'believ', 'na', 've', '42']);
  assert.deepEqual(rougeTokenize('/'), []);
});

test('Porter stemmer matches NLTK (NLTK_EXTENSIONS mode)', () => {
  const words = ['caresses', 'flies', 'dies', 'mules', 'denied', 'died', 'agreed', 'owned', 'humbled', 'sized', 'meeting', 'stating', 'siezing', 'itemization', 'sensational', 'traditional', 'reference', 'colonizer', 'plotted'];
  assert.equal(words.map(porterStem).join(' '), 'caress fli die mule deni die agre own humbl size meet state siez item sensat tradit refer colon plot');
  assert.equal(porterStem('oed'), 'o'); // nltk test_stem.py test_oed_bug
  // NLTK's irregular forms and the <= 2 letter rule.
  assert.equal(porterStem('skies'), 'sky');
  assert.equal(porterStem('dying'), 'die');
  assert.equal(porterStem('news'), 'news');
  assert.equal(porterStem('is'), 'is');
  // Examples from Porter's paper as quoted in NLTK's step docstrings.
  const paper: [string, string][] = [
    ['ponies', 'poni'], ['cats', 'cat'], ['feed', 'feed'], ['plastered', 'plaster'], ['motoring', 'motor'],
    ['sing', 'sing'], ['conflated', 'conflat'], ['hopping', 'hop'], ['falling', 'fall'], ['hissing', 'hiss'],
    ['filing', 'file'], ['happy', 'happi'], ['enjoy', 'enjoy'], ['relational', 'relat'], ['conditional', 'condit'],
    ['rational', 'ration'], ['valenci', 'valenc'], ['digitizer', 'digit'], ['operator', 'oper'], ['feudalism', 'feudal'],
    ['decisiveness', 'decis'], ['hopefulness', 'hope'], ['callousness', 'callous'], ['formaliti', 'formal'],
    ['sensitiviti', 'sensit'], ['sensibiliti', 'sensibl'], ['triplicate', 'triplic'], ['formative', 'form'],
    ['formalize', 'formal'], ['electriciti', 'electr'], ['electrical', 'electr'], ['hopeful', 'hope'],
    ['goodness', 'good'], ['revival', 'reviv'], ['allowance', 'allow'], ['inference', 'infer'], ['airliner', 'airlin'],
    ['adjustable', 'adjust'], ['defensible', 'defens'], ['irritant', 'irrit'], ['replacement', 'replac'],
    ['adjustment', 'adjust'], ['dependent', 'depend'], ['adoption', 'adopt'], ['communism', 'commun'],
    ['activate', 'activ'], ['effective', 'effect'], ['bowdlerize', 'bowdler'], ['probate', 'probat'], ['rate', 'rate'],
    ['cease', 'ceas'], ['controll', 'control'], ['roll', 'roll'], ['generalizations', 'gener'], ['archaeology', 'archaeolog'],
  ];
  for (const [w, s] of paper) assert.equal(porterStem(w), s, `stem(${w})`);
});

test('small cases match rouge_scorer_test.py', () => {
  // score("testing one two", "testing"): target first, prediction second.
  assertScore(rougePair('testing', 'testing one two', { types: ['rouge1'] }).rouge1, 1, 1 / 3, 1 / 2);
  assertScore(rougePair('testing one', 'testing one two', { types: ['rouge2'] }).rouge2, 1, 1 / 2, 2 / 3);
  assertScore(rougePair('testing one', 'testing one two', { types: ['rougeL'] }).rougeL, 1, 2 / 3, 4 / 5);
  assertScore(rougePair('testing two', 'testing one two', { types: ['rougeL'] }).rougeL, 1, 2 / 3, 4 / 5);
  const multi = rougePair('testing one', 'testing one two', { types: ['rouge1', 'rougeL'] });
  assert.deepEqual(Object.keys(multi).sort(), ['rouge1', 'rougeL']);
  assertScore(multi.rouge1, 1, 2 / 3, 4 / 5);
  assertScore(multi.rougeL, 1, 2 / 3, 4 / 5);
  for (const t of ['rouge1', 'rouge2', 'rougeL', 'rougeLsum'] as const) {
    assertScore(rougePair<RougeType>('', 'testing one two', { types: [t] })[t], 0, 0, 0);
  }
});

test('scores match ROUGE-1.5.5 as published in rouge_scorer_test.py', () => {
  const plain = [rougePair(PREDICTIONS[0]!, TARGETS[0]!), rougePair(PREDICTIONS[1]!, TARGETS[1]!)];
  assertScore(plain[0]!.rouge1, 0.6875, 0.40741, 0.51163);
  assertScore(plain[1]!.rouge1, 0.65385, 0.40476, 0.5);
  assertScore(plain[0]!.rouge2, 0.53333, 0.30769, 0.39024);
  assertScore(plain[1]!.rouge2, 0.48, 0.29268, 0.36364);
  assertScore(plain[0]!.rougeL, 0.6875, 0.40741, 0.51163);
  assertScore(plain[1]!.rougeL, 0.65385, 0.40476, 0.5);
  const stemmed = [0, 1].map((i) => rougePair(PREDICTIONS[i]!, TARGETS[i]!, { stemmer: true }));
  assertScore(stemmed[0]!.rouge1, 0.6875, 0.40741, 0.51163);
  assertScore(stemmed[1]!.rouge1, 0.69231, 0.42857, 0.52941);
  assertScore(stemmed[0]!.rouge2, 0.53333, 0.30769, 0.39024);
  assertScore(stemmed[1]!.rouge2, 0.48, 0.29268, 0.36364);
});

test('rougeLsum matches rouge_scorer_test.py', () => {
  const r = rougePair('w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5', 'w1 w2 w3 w4 w5', { types: ['rougeLsum'] });
  assertScore(r.rougeLsum, 0.4, 0.8, 0.5333, 1e-3);
  for (const [hyp, ref] of [['', 'w1 w2 w3 w4 w5'], ['w1', ''], ['/', 'w1 w2 w3 w4 w5']] as const) {
    assertScore(rougePair(hyp, ref, { types: ['rougeLsum'] }).rougeLsum, 0, 0, 0);
  }
  // testRougeLSumAgainstRouge155WithStemming: pyrouge_files/target_multi.0.txt / prediction_multi.0.txt
  const target =
    "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n" +
    "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n" +
    "NhETebUbBk'er WOvoHMTjSRizKgH'vHiing Xu,hWxfs VkNE QhgKiLHE -HidivzoM.dO anhtion jbLQiSGDTCsuhREebUaKM dv J dVN tmbOT\n" +
    "vMR HDm,xOAetion D,tion HJtodT.mHl UIv-p VjWH'BdyWjnfGU-OjT aEMdFICyLWfQMtion wEMfdOKing AwkeKbO 'DxqNOHBH qKtVvm OYJl mM\n";
  const prediction =
    "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n" +
    "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n" +
    'xfs VkJE QhgKiLHE -HidivzoM.dO anhing jbLQiSGDTCsuhREebUaKM dv J\n' +
    "VjWH'BdyWjnfGU-OjTNaEMdFICyLWfQMing wEMfdOKijg AwkeKbO 'DxqNO\n";
  assertScore(rougePair(prediction, target, { types: ['rougeLsum'], stemmer: true }).rougeLsum, 0.66667, 0.36538, 0.47205);
});

test('corpus scores are the mean of the per-pair scores', () => {
  const c = rougeScores(PREDICTIONS, TARGETS);
  assertScore(c.rouge1, (0.6875 + 0.65385) / 2, (0.40741 + 0.40476) / 2, (0.51163 + 0.5) / 2);
  assertScore(c.rouge2, (0.53333 + 0.48) / 2, (0.30769 + 0.29268) / 2, (0.39024 + 0.36364) / 2);
  const s = rougeScores(PREDICTIONS, TARGETS, { stemmer: true, types: ['rouge1'] });
  assert.deepEqual(Object.keys(s), ['rouge1']);
  assertScore(s.rouge1, (0.6875 + 0.69231) / 2, (0.40741 + 0.42857) / 2, (0.51163 + 0.52941) / 2);
});

test('formatRouge prints P/R/F x100 with 2 decimals, one line per type', () => {
  assert.deepEqual(formatRouge(rougeScores(PREDICTIONS, TARGETS)), [
    // rouge1 P = (0.6875 + 17/26) / 2 = 0.670673, R = (11/27 + 17/42) / 2 = 0.406085, F = (22/43 + 0.5) / 2 = 0.505814
    'ROUGE-1 P/R/F = 67.07/40.61/50.58',
    'ROUGE-2 P/R/F = 50.67/30.02/37.69',
    'ROUGE-L P/R/F = 67.07/40.61/50.58',
  ]);
  assert.deepEqual(rougeLines(['testing one'], ['testing one two'], { types: ['rougeL', 'rouge1'] }), [
    'ROUGE-1 P/R/F = 100.00/66.67/80.00',
    'ROUGE-L P/R/F = 100.00/66.67/80.00',
  ]);
});

test('bad input raises DifformerError', () => {
  assert.throws(
    () => rougeScores(['a', 'b'], ['a']),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_LINE_COUNT_MISMATCH' && /2 lines/.test(e.message) && /has 1/.test(e.message),
  );
  assert.throws(() => rougeScores([], []), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_EMPTY_CORPUS');
  const bad = ['rouge3'] as unknown as RougeType[];
  assert.throws(() => rougePair<RougeType>('a', 'a', { types: bad }), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION');
});
