/**
 * difformer-preprocess: raw parallel text -> data-bin, as fairseq-preprocess (fairseq_cli/
 * preprocess.py, v0.10.2), plus SentencePiece learning/encoding. Pipeline:
 *   1. read and check every split (line counts, UTF-8, empty corpus, blank lines)
 *   2. learn (--spm-vocab-size) or load (--spm-model) a SentencePiece model; encode all splits
 *      (or BERT WordPiece: --tokenizer wordpiece --wordpiece-vocab vocab.txt, src/data/wordpiece.ts)
 *   3. build or load dictionaries (joined or per language; threshold, nwords, padding to 8)
 *   4. binarize each split and language to .bin/.idx; write preprocess.log
 * Everything is written into a temporary folder inside --destdir and renamed into place at the
 * end, so an interrupted run leaves no half data-bin.
 */
import { accessSync, appendFileSync, constants, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Dictionary } from '../data/dictionary.js';
import { IndexedDatasetBuilder } from '../data/indexed_dataset.js';
import { readLines, readParallel, readTextFile, type Corpus } from '../data/text.js';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
import {
  boolFlag,
  choiceFlag,
  intFlag,
  optionalStringFlag,
  stringFlag,
  type OptionTable,
} from '../options.js';
import { createProgress } from '../progress.js';

export interface PreprocessOptions {
  sourceLang: string | undefined;
  targetLang: string | undefined;
  trainpref: string | undefined;
  validpref: string | undefined;
  testpref: string | undefined;
  destdir: string;
  joinedDictionary: boolean;
  srcdict: string | undefined;
  tgtdict: string | undefined;
  nwordssrc: number;
  nwordstgt: number;
  thresholdsrc: number;
  thresholdtgt: number;
  paddingFactor: number;
  workers: number;
  spmVocabSize: number;
  spmModelType: 'bpe' | 'unigram';
  spmModel: string | undefined;
  // BERT WordPiece (src/data/wordpiece.ts)
  tokenizer: 'none' | 'wordpiece';
  wordpieceVocab: string | undefined;
  lowercase: boolean;
  stripAccents: boolean | undefined;
  onlySource: boolean;
}

export const preprocessDefaults: Readonly<PreprocessOptions> = Object.freeze({
  sourceLang: undefined,
  targetLang: undefined,
  trainpref: undefined,
  validpref: undefined,
  testpref: undefined,
  destdir: 'data-bin',
  joinedDictionary: false,
  srcdict: undefined,
  tgtdict: undefined,
  nwordssrc: -1,
  nwordstgt: -1,
  thresholdsrc: 0,
  thresholdtgt: 0,
  paddingFactor: 8,
  workers: 1,
  spmVocabSize: 0,
  spmModelType: 'bpe',
  spmModel: undefined,
  tokenizer: 'none',
  wordpieceVocab: undefined,
  lowercase: false,
  stripAccents: undefined,
  onlySource: false,
});

export const preprocessOptionTable: OptionTable<PreprocessOptions> = {
  sourceLang: { ...optionalStringFlag('--source-lang', 'source language (file suffix)', 'SRC'), short: '-s' },
  targetLang: { ...optionalStringFlag('--target-lang', 'target language (file suffix)', 'TGT'), short: '-t' },
  trainpref: optionalStringFlag('--trainpref', 'train file prefix: reads PREFIX.SRC and PREFIX.TGT (or .gz)', 'FP'),
  validpref: optionalStringFlag('--validpref', 'comma separated valid file prefixes', 'FP'),
  testpref: optionalStringFlag('--testpref', 'comma separated test file prefixes', 'FP'),
  destdir: stringFlag('--destdir', 'destination dir', 'DIR'),
  joinedDictionary: boolFlag('--joined-dictionary', 'generate one joined dictionary for both languages'),
  srcdict: optionalStringFlag('--srcdict', 'reuse given source dictionary', 'FP'),
  tgtdict: optionalStringFlag('--tgtdict', 'reuse given target dictionary', 'FP'),
  nwordssrc: intFlag('--nwordssrc', 'number of source words to retain (-1 = all)'),
  nwordstgt: intFlag('--nwordstgt', 'number of target words to retain (-1 = all)'),
  thresholdsrc: intFlag('--thresholdsrc', 'map words appearing less than N times to <unk>', 'N', 0),
  thresholdtgt: intFlag('--thresholdtgt', 'map words appearing less than N times to <unk>', 'N', 0),
  paddingFactor: intFlag('--padding-factor', 'pad dictionary size to a multiple of N', 'N', 1),
  workers: intFlag('--workers', "accepted for fairseq compatibility; encoding runs in one thread (SentencePiece encodes each distinct word once, ~75k lines/s)", 'N', 0),
  spmVocabSize: intFlag('--spm-vocab-size', 'learn a SentencePiece model of this size on the training data (0 = input is already tokenized)', 'N', 0),
  spmModelType: choiceFlag('--spm-model-type', 'SentencePiece model type', ['bpe', 'unigram'] as const),
  spmModel: optionalStringFlag('--spm-model', 'encode with this existing SentencePiece model instead of learning one', 'FILE'),
  tokenizer: choiceFlag('--tokenizer', "'wordpiece': BERT's tokenizer with --wordpiece-vocab (the dictionary keeps the pieces seen in training)", ['none', 'wordpiece'] as const),
  wordpieceVocab: optionalStringFlag('--wordpiece-vocab', "BERT's vocab.txt for --tokenizer wordpiece", 'FILE'),
  lowercase: boolFlag('--lowercase', 'wordpiece: lowercase (uncased BERT models); also strips accents unless --no-strip-accents'),
  stripAccents: boolFlag('--strip-accents', 'wordpiece: strip accents (NFD, drop combining marks)'),
  onlySource: boolFlag('--only-source', 'binarize only the source side (held-out text without references); needs the dictionaries of an existing data-bin'),
};

interface Split {
  name: string; // train, valid, valid1, test, ...
  prefix: string;
  src: Corpus;
  /** Absent with --only-source. */
  tgt: Corpus | undefined;
}

export interface PreprocessResult {
  destdir: string;
  dictSizes: { src: number; tgt: number };
  splits: { name: string; sentences: number; blank: number; tokens: { src: number; tgt: number }; unk: { src: number; tgt: number } }[];
  seconds: number;
}

function splitPrefixes(kind: 'valid' | 'test', prefs: string | undefined): { name: string; prefix: string }[] {
  if (!prefs) return [];
  return prefs
    .split(',')
    .filter((p) => p.length > 0)
    .map((prefix, i) => ({ name: i === 0 ? kind : `${kind}${i}`, prefix }));
}

function checkWritable(destdir: string): void {
  try {
    mkdirSync(destdir, { recursive: true });
    accessSync(destdir, constants.W_OK);
  } catch (e) {
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `--destdir ${destdir} is not writable: ${(e as Error).message}`);
  }
}

function loadDict(path: string): Dictionary {
  return Dictionary.fromText(readTextFile(path), path);
}

function buildDict(corpora: Corpus[][], threshold: number, nwords: number, paddingFactor: number): Dictionary {
  const d = new Dictionary();
  for (const group of corpora) for (const c of group) for (const line of c.lines) d.addLine(line);
  d.finalize(threshold, nwords, paddingFactor);
  return d;
}

export async function runPreprocess(opts: PreprocessOptions): Promise<PreprocessResult> {
  const log = getLogger();
  const t0 = Date.now();
  const src = opts.sourceLang;
  const tgt = opts.targetLang;
  if (!src || !tgt) throw new DifformerError('DIFFORMER_BAD_OPTION', 'both --source-lang and --target-lang are required');
  checkPreprocessOptions(opts, src, tgt);

  // 1. read and check every split
  const splits = readSplits(opts, src, tgt);
  // adding raw text to a SentencePiece data-bin: it must be encoded the same way (text already
  // encoded outside, e.g. by spm_encode, carries the '\u2581' word marks and is taken as given)
  const spmPath = join(opts.destdir, 'spm.model');
  const preEncoded = splits.some((sp) => sp.src.lines.some((l) => l.includes('\u2581')));
  if (existsSync(spmPath) && !opts.spmModel && opts.tokenizer !== 'wordpiece' && !preEncoded) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `${opts.destdir} holds a SentencePiece model: encode the new splits with it (--spm-model ${spmPath}), or use a new --destdir for pre-tokenized text`);
  }

  const tmp = join(opts.destdir, `.preprocess-tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const cleanup = () => rmSync(tmp, { recursive: true, force: true });
  const onInterrupt = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt); // removed again below: a library caller may preprocess many times
  try {
    // 2. SentencePiece (learn or load, then encode every split) or BERT WordPiece
    if (opts.spmVocabSize > 0 || opts.spmModel) await encodeWithSentencePiece(opts, splits, tmp);
    if (opts.tokenizer === 'wordpiece') await encodeWithWordpiece(opts, splits);

    // 3. dictionaries
    const { srcDict, tgtDict } = buildDictionaries(opts, splits);
    writeFileSync(join(tmp, `dict.${src}.txt`), srcDict.toText());
    writeFileSync(join(tmp, `dict.${tgt}.txt`), tgtDict.toText());

    // 4. binarize
    const logLines: string[] = [`${new Date().toISOString()} | args ${JSON.stringify(opts)}`];
    logLines.push(`[${src}] Dictionary: ${srcDict.size} types`, `[${tgt}] Dictionary: ${tgtDict.size} types`);
    const binarized = binarizeSplits(splits, srcDict, tgtDict, { tmp, src, tgt, logLines });
    const result: PreprocessResult = { destdir: opts.destdir, dictSizes: { src: srcDict.size, tgt: tgtDict.size }, splits: binarized, seconds: 0 };
    logLines.push(`Wrote preprocessed data to ${opts.destdir}`);

    // move everything into place only now
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(opts.destdir, f));
    // a source-only split replaces an earlier one whole: its old references would no longer line up
    for (const split of splits) {
      if (!split.tgt) for (const ext of ['bin', 'idx']) rmSync(join(opts.destdir, `${split.name}.${src}-${tgt}.${tgt}.${ext}`), { force: true });
    }
    appendFileSync(join(opts.destdir, 'preprocess.log'), `${logLines.join('\n')}\n`);
    result.seconds = (Date.now() - t0) / 1000;
    log.info({ destdir: opts.destdir, seconds: result.seconds }, `wrote preprocessed data to ${opts.destdir}`);
    return result;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    cleanup();
  }
}

/** Everything about the flags and --destdir that can fail before any text is read. */
function checkPreprocessOptions(opts: PreprocessOptions, src: string, tgt: string): void {
  const log = getLogger();
  if (opts.onlySource && opts.trainpref) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--only-source is for held-out text (--validpref/--testpref): training needs targets');
  }
  if (!opts.trainpref && !opts.srcdict && !(opts.joinedDictionary && opts.tgtdict)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--trainpref is required unless --srcdict (and --tgtdict) are given');
  }
  if (opts.spmVocabSize > 0 && opts.spmModel) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', 'give either --spm-vocab-size (learn a model) or --spm-model (reuse one), not both');
  }
  if (opts.spmVocabSize > 0 && !opts.trainpref) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--spm-vocab-size needs --trainpref to learn from');
  }
  if (opts.tokenizer === 'wordpiece' && !opts.wordpieceVocab) throw new DifformerError('DIFFORMER_BAD_OPTION', "--tokenizer wordpiece needs --wordpiece-vocab (BERT's vocab.txt)");
  if (opts.tokenizer === 'wordpiece' && (opts.spmVocabSize > 0 || opts.spmModel)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--tokenizer wordpiece and SentencePiece (--spm-vocab-size/--spm-model) exclude each other');
  }
  if (opts.tokenizer !== 'wordpiece' && (opts.wordpieceVocab || opts.lowercase)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--wordpiece-vocab and --lowercase need --tokenizer wordpiece');
  }
  checkWritable(opts.destdir);
  if (opts.workers > 1) {
    log.info({ workers: opts.workers }, '--workers: encoding runs in one thread here (words are encoded once and cached, so it is rarely the bottleneck)');
  }
  for (const lang of [src, tgt]) {
    const dictPath = join(opts.destdir, `dict.${lang}.txt`);
    const reused = opts.joinedDictionary ? opts.srcdict ?? opts.tgtdict : lang === src ? opts.srcdict : opts.tgtdict;
    if (existsSync(dictPath) && !reused) {
      throw new DifformerError(
        'DIFFORMER_NOT_WRITABLE',
        `${dictPath} already exists: remove it (or the whole --destdir), or reuse it with --srcdict/--tgtdict`,
      );
    }
    // the binaries already in --destdir were written with its dictionary: never swap it under them
    if (existsSync(dictPath) && reused && existsSync(reused) && !sameBytes(dictPath, reused)) {
      throw new DifformerError('DIFFORMER_NOT_WRITABLE', `${dictPath} already exists and differs from ${reused}: use a new --destdir, or pass ${dictPath} itself`);
    }
  }
  const spmPath = join(opts.destdir, 'spm.model');
  if (existsSync(spmPath)) {
    if (opts.spmVocabSize > 0) {
      throw new DifformerError('DIFFORMER_NOT_WRITABLE', `${spmPath} already exists: reuse it with --spm-model ${spmPath}, or use a new --destdir`);
    }
    if (opts.spmModel && existsSync(opts.spmModel) && !sameBytes(spmPath, opts.spmModel)) {
      throw new DifformerError('DIFFORMER_NOT_WRITABLE', `${spmPath} already exists and differs from --spm-model ${opts.spmModel}: use a new --destdir`);
    }
  }
}

function readSplits(opts: PreprocessOptions, src: string, tgt: string): Split[] {
  const log = getLogger();
  const wanted = [
    ...(opts.trainpref ? [{ name: 'train', prefix: opts.trainpref }] : []),
    ...splitPrefixes('valid', opts.validpref),
    ...splitPrefixes('test', opts.testpref),
  ];
  return wanted.map(({ name, prefix }) => {
    const { src: s, tgt: t } = opts.onlySource ? { src: readSource(`${prefix}.${src}`), tgt: undefined } : readParallel(`${prefix}.${src}`, `${prefix}.${tgt}`);
    const blank = blankPairs(s, t);
    if (blank === s.lines.length) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `empty corpus: every line of ${[s, t].flatMap((c) => (c ? [c.path] : [])).join(' / ')} is blank`);
    if (blank > 0) log.warn({ split: name, blank }, `${name}: ${blank} blank line pairs kept as empty sequences (training skips them; line ids stay aligned)`);
    return { name, prefix, src: s, tgt: t };
  });
}

/** Learns (on train, both sides) or loads --spm-model into TMP/spm.model and encodes every split in place. */
async function encodeWithSentencePiece(opts: PreprocessOptions, splits: Split[], tmp: string): Promise<void> {
  const log = getLogger();
  const [src, tgt] = [opts.sourceLang!, opts.targetLang!];
  const { trainSentencePiece, SentencePieceModel } = await import('../data/spm.js');
  const modelPath = join(tmp, 'spm.model');
  if (opts.spmModel) {
    if (!existsSync(opts.spmModel)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `--spm-model ${opts.spmModel}: file not found`);
    copyFileSync(opts.spmModel, modelPath);
  } else {
    const train = splits.find((s) => s.name === 'train')!;
    const inputs = [...train.src.lines, ...train.tgt!.lines].filter((l) => l.trim() !== '');
    const bar = createProgress('learn spm', 100);
    const res = await trainSentencePiece({
      inputs,
      vocabSize: opts.spmVocabSize,
      modelType: opts.spmModelType,
      outputPath: modelPath,
      seed: 1,
      onProgress: (done: number, total: number) => bar.update(Math.round((100 * done) / Math.max(1, total))),
    });
    bar.stop();
    log.info({ engine: res.engine, seconds: res.seconds, vocabSize: opts.spmVocabSize, type: opts.spmModelType }, `learned SentencePiece model (${res.engine})`);
  }
  const spm = await SentencePieceModel.load(opts.spmModel ?? modelPath); // errors name the user's file, not the temp copy
  encodeSplits(splits, [src, tgt], 'encode', (l) => spm.encodePieces(l));
}

/** Every side of every split through `encode`, in place, one progress bar per file; `done` after each file. */
function encodeSplits(splits: Split[], [src, tgt]: [string, string], label: string, encode: (line: string) => string[], done?: (split: string, lang: string) => void): void {
  for (const split of splits) {
    for (const corpus of sides(split)) {
      const lang = corpus === split.src ? src : tgt;
      const bar = createProgress(`${label} ${split.name}.${lang}`, corpus.lines.length);
      corpus.lines = corpus.lines.map((l, i) => {
        if ((i & 1023) === 0) bar.update(i);
        return encode(l).join(' ');
      });
      bar.stop();
      done?.(split.name, lang);
    }
  }
}

/**
 * BERT WordPiece, in place. The dictionary (step 3) is built from these pieces of the training
 * data, so it holds exactly the vocabulary entries seen in training (the paper's setup).
 */
async function encodeWithWordpiece(opts: PreprocessOptions, splits: Split[]): Promise<void> {
  const log = getLogger();
  const [src, tgt] = [opts.sourceLang!, opts.targetLang!];
  const { WordpieceTokenizer, readWordpieceVocab } = await import('../data/wordpiece.js');
  const vocab = readWordpieceVocab(opts.wordpieceVocab!);
  const wp = new WordpieceTokenizer(vocab, { lowercase: opts.lowercase, stripAccents: opts.stripAccents, unkToken: '<unk>' });
  let unknown = 0; // per file: whole words the vocabulary cannot cover (binarization counts them as given <unk>)
  const tokenize = (l: string): string[] => {
    const pieces = wp.tokenize(l);
    for (const p of pieces) if (p === '<unk>') unknown++;
    return pieces;
  };
  encodeSplits(splits, [src, tgt], 'wordpiece', tokenize, (split, lang) => {
    if (unknown > 0) log.info({ split, lang, unknownWords: unknown }, `wordpiece ${split}.${lang}: ${unknown} words not covered by the vocabulary became <unk>`);
    unknown = 0;
  });
  log.info({ vocab: opts.wordpieceVocab, size: vocab.length, lowercase: opts.lowercase, stripAccents: opts.stripAccents ?? opts.lowercase }, `tokenized with WordPiece (${vocab.length} entries in ${opts.wordpieceVocab})`);
}

/** Reused (--srcdict/--tgtdict) or built from the training split, joined or per language. */
function buildDictionaries(opts: PreprocessOptions, splits: Split[]): { srcDict: Dictionary; tgtDict: Dictionary } {
  const train = splits.find((s) => s.name === 'train');
  let srcDict: Dictionary;
  let tgtDict: Dictionary;
  if (opts.joinedDictionary) {
    if (opts.srcdict && opts.tgtdict && opts.srcdict !== opts.tgtdict) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', 'cannot use both --srcdict and --tgtdict with --joined-dictionary');
    }
    const given = opts.srcdict ?? opts.tgtdict;
    srcDict = given ? loadDict(given) : buildDict([[train!.src, train!.tgt!]], opts.thresholdsrc, opts.nwordssrc, opts.paddingFactor);
    tgtDict = srcDict;
  } else {
    srcDict = opts.srcdict ? loadDict(opts.srcdict) : buildDict([[train!.src]], opts.thresholdsrc, opts.nwordssrc, opts.paddingFactor);
    if (!opts.tgtdict && !train) throw new DifformerError('DIFFORMER_BAD_OPTION', '--tgtdict is required without --trainpref');
    tgtDict = opts.tgtdict ? loadDict(opts.tgtdict) : buildDict([[train!.tgt!]], opts.thresholdtgt, opts.nwordstgt, opts.paddingFactor);
  }
  return { srcDict, tgtDict };
}

/** Writes each split's .bin/.idx into TMP; returns the statistics and adds preprocess.log lines. */
function binarizeSplits(splits: Split[], srcDict: Dictionary, tgtDict: Dictionary, where: { tmp: string; src: string; tgt: string; logLines: string[] }): PreprocessResult['splits'] {
  const log = getLogger();
  const { tmp, src, tgt, logLines } = where;
  const out: PreprocessResult['splits'] = [];
  for (const split of splits) {
    const stats = { name: split.name, sentences: split.src.lines.length, blank: 0, tokens: { src: 0, tgt: 0 }, unk: { src: 0, tgt: 0 } };
    stats.blank = blankPairs(split.src, split.tgt);
    for (const [lang, corpus, dict, side] of [
      [src, split.src, srcDict, 'src'],
      [tgt, split.tgt, tgtDict, 'tgt'],
    ] as const) {
      if (!corpus) continue;
      const builder = new IndexedDatasetBuilder(join(tmp, `${split.name}.${src}-${tgt}.${lang}`), dict.size);
      const bar = createProgress(`binarize ${split.name}.${lang}`, corpus.lines.length);
      let ntok = 0;
      let nunk = 0;
      corpus.lines.forEach((line, i) => {
        const ids = dict.encodeLine(line);
        ntok += ids.length;
        const words = line.trim() === '' ? [] : line.trim().split(/\s+/);
        for (let k = 0; k < words.length; k++) if (ids[k] === dict.unkIndex && words[k] !== '<unk>') nunk++;
        builder.add(ids);
        if ((i & 1023) === 0) bar.update(i);
      });
      bar.update(corpus.lines.length);
      bar.stop();
      builder.finish();
      stats.tokens[side] = ntok;
      stats.unk[side] = nunk;
      const pct = ntok > 0 ? (100 * nunk) / ntok : 0;
      logLines.push(`[${lang}] ${corpus.path}: ${corpus.lines.length} sents, ${ntok} tokens, ${pct.toFixed(3)}% replaced by <unk>`);
      log.info({ split: split.name, lang, sentences: corpus.lines.length, tokens: ntok, unkPct: Number(pct.toFixed(3)) }, `binarized ${split.name}.${lang}`);
      // a reused dictionary that does not match the text (wrong tokenization or language)
      if (pct > 5 && split.name !== 'train') {
        log.warn({ split: split.name, lang, unkPct: Number(pct.toFixed(1)) }, `${split.name}.${lang}: ${pct.toFixed(1)}% of the tokens are <unk>: is the text tokenized as the dictionary's (--spm-model)?`);
      }
    }
    if (stats.blank > 0) logLines.push(`[${split.name}] ${stats.blank} blank line pairs kept as empty sequences`);
    out.push(stats);
  }
  return out;
}

function sameBytes(a: string, b: string): boolean {
  return resolve(a) === resolve(b) || readFileSync(a).equals(readFileSync(b));
}

/** The corpora of a split: source, and target unless --only-source. */
function sides(split: Split): Corpus[] {
  return split.tgt ? [split.src, split.tgt] : [split.src];
}

/** Lines where either side is blank (kept as empty sequences). */
function blankPairs(s: Corpus, t: Corpus | undefined): number {
  return s.lines.filter((l, i) => l.trim() === '' || (t !== undefined && t.lines[i]!.trim() === '')).length;
}

/** A source file alone (--only-source): read and checked like a parallel one. */
function readSource(path: string): Corpus {
  const c = readLines(path);
  if (c.lines.length === 0) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `empty corpus: ${c.path} has no lines`);
  return c;
}
