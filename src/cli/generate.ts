/**
 * difformer-generate DATA --path CKPT: fairseq-generate (fairseq_cli/generate.py, v0.10.2).
 *   1. load the checkpoint (config + dictionaries + weights); 2. backend; 3. task and split,
 *   dictionaries checked against the checkpoint; 4. model and its generator family;
 *   5. decode batches, print S-/T-/H-/D-/P- lines (scores in base 2) in batch order;
 *   6. the final "Generate <subset> with beam=<b>: BLEU4 = ..." line.
 * `--input -` reads raw sentences from stdin instead (fairseq-interactive): they are encoded
 * with the data-bin's spm.model and source dictionary, and S-/H-/D-/P- lines are printed in
 * input order, all at once or --buffer-size sentences at a time (one at a time on a terminal).
 */
import { Command } from 'commander';
import { checkWritableFile, writeFileAtomic } from '../atomic.js';
import { InMemoryDataset } from '../data/indexed_dataset.js';
import { readLines, streamLines } from '../data/text.js';
import { join } from 'node:path';
import type { Dictionary } from '../data/dictionary.js';
import { LanguagePairDataset, type Batch } from '../data/language_pair_dataset.js';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
import { fairseqBleu, formatFairseqBleu, rougeLines, sacreBleuLines } from '../metrics/index.js';
import {
  boolFlag,
  commonDefaults,
  commonOptionTable,
  intFlag,
  optionalStringFlag,
  readOptions,
  resolveOptions,
  stringFlag,
  type OptionTable,
} from '../options.js';
import { createProgress } from '../progress.js';
import type { Task } from '../task.js';
import { buildGenerator, resolveGeneratorOptions } from '../generate/index.js';
import type { SequenceGenerator, Hypothesis } from '../generate/generator.js';
import { decodingCommand, loadCheckpointModel, modelPositionLimits, startBackend, type LoadedModel } from './shared.js';
import { postProcess } from '../data/post_process.js';
import { buildReferenceScorer, isReferenceScorer } from '../generate/reference_scorer.js';

export interface GenerateOptions {
  path: string | undefined;
  genSubset: string;
  batchSize: number | undefined;
  maxTokens: number | undefined;
  resultsPath: string | undefined;
  quiet: boolean;
  sacrebleu: boolean;
  scoreReference: boolean;
  printStep: boolean;
  removeBpe: string | undefined;
  postProcess: string | undefined;
  input: string | undefined;
  bufferSize: number;
  sourceLang: string | undefined;
  targetLang: string | undefined;
  maxSentences: number;
  skipInvalidSizeInputsValidTest: boolean;
}

export const generateDefaults: Readonly<GenerateOptions> = Object.freeze({
  path: undefined,
  genSubset: 'test',
  batchSize: undefined,
  maxTokens: undefined,
  resultsPath: undefined,
  quiet: false,
  sacrebleu: false,
  scoreReference: false,
  printStep: false,
  removeBpe: undefined,
  postProcess: undefined,
  input: undefined,
  bufferSize: 0,
  sourceLang: undefined,
  targetLang: undefined,
  maxSentences: 0,
  skipInvalidSizeInputsValidTest: false,
});

export const generateOptionTable: OptionTable<GenerateOptions> = {
  path: optionalStringFlag('--path', 'checkpoint to generate with; MODEL:RERANKER for rerankers', 'FILE'),
  genSubset: stringFlag('--gen-subset', 'data split to generate from', 'SPLIT'),
  batchSize: intFlag('--batch-size', 'sentences per batch', 'N', 1),
  maxTokens: intFlag('--max-tokens', 'tokens per batch', 'N', 1),
  resultsPath: optionalStringFlag('--results-path', 'write output to DIR/generate-<subset>.txt instead of stdout', 'DIR'),
  quiet: boolFlag('--quiet', 'only print the final score line'),
  printStep: boolFlag('--print-step', 'iterative decoders (CMLM, diffusion): print I-<id> lines with the 0-based step at which the hypothesis was final'),
  scoreReference: boolFlag('--score-reference', 'no search: score each reference with the autoregressive model (H-/P- lines hold the reference and its log-probs)'),
  sacrebleu: boolFlag('--sacrebleu', "final line: sacreBLEU (13a) instead of fairseq's BLEU4, on the post-processed references of the data-bin"),
  removeBpe: optionalStringFlag('--remove-bpe', "remove subword markers: 'sentencepiece' or a BPE continuation string such as '@@ '", 'KIND'),
  postProcess: optionalStringFlag('--post-process', 'same as --remove-bpe', 'KIND'),
  input: optionalStringFlag('--input', "'-' reads raw source sentences from stdin (interactive mode)", 'FILE'),
  bufferSize: intFlag('--buffer-size', 'with --input: decode N sentences at a time as they come (0 = all at once; 1 on a terminal)', 'N', 0),
  sourceLang: { ...optionalStringFlag('--source-lang', 'source language (default: from the checkpoint)', 'SRC'), short: '-s' },
  targetLang: { ...optionalStringFlag('--target-lang', 'target language (default: from the checkpoint)', 'TGT'), short: '-t' },
  maxSentences: intFlag('--max-sentences-to-generate', 'stop after this many sentences (0 = all)', 'N', 0),
  skipInvalidSizeInputsValidTest: boolFlag('--skip-invalid-size-inputs-valid-test', 'skip sentences longer than the model has positions for (or than --max-tokens) instead of failing'),
};

export function buildGenerateCommand(argv: string[]): Promise<Command> {
  return decodingCommand(
    argv,
    'generate',
    'generate with a trained model: S-/T-/H-/D-/P- lines and a final BLEU4 line (fairseq-generate)',
    'data-bin directory',
    generateOptionTable,
    generateDefaults,
    runGenerate,
  );
}

function loadModel(path: string, data: string, parsed: Record<string, unknown>, seed: number): Promise<LoadedModel> {
  const overrides: Record<string, unknown> = {};
  if (parsed.sourceLang) overrides.sourceLang = parsed.sourceLang;
  if (parsed.targetLang) overrides.targetLang = parsed.targetLang;
  return loadCheckpointModel(path, data, seed, overrides);
}

function formatHypo(h: Hypothesis, dict: Dictionary, removeBpe: string | undefined): { str: string; score: string; pos: string } {
  const str = postProcess(dict.string(h.tokens), removeBpe);
  const score = String(h.score / Math.LN2);
  const pos = Array.from(h.positionalScores, (s) => (s / Math.LN2).toFixed(4)).join(' ');
  return { str, score, pos };
}

export async function runGenerate(data: string, parsed: Record<string, unknown>): Promise<void> {
  const log = getLogger();
  const opts = resolveOptions(generateDefaults, readOptions(generateOptionTable, parsed));
  const common = resolveOptions(commonDefaults, readOptions(commonOptionTable, parsed));
  if (!opts.path) throw new DifformerError('DIFFORMER_BAD_OPTION', '--path is required (a checkpoint written by difformer-train)');
  const removeBpe = opts.removeBpe ?? opts.postProcess;
  const [mainPath, ...extraPaths] = opts.path.split(':');

  // 1-2. backend, checkpoint, task, model
  await startBackend(common);
  const main = await loadModel(mainPath!, data, parsed, common.seed);
  const extra: LoadedModel[] = [];
  for (const p of extraPaths) extra.push(await loadModel(p, data, parsed, common.seed));
  const { task, model, ckpt } = main;
  const genOpts = resolveGeneratorOptions(parsed);
  let generator: SequenceGenerator;
  if (opts.scoreReference) {
    if (!isReferenceScorer(model)) throw new DifformerError('DIFFORMER_BAD_OPTION', `--score-reference needs an autoregressive model; ${mainPath} holds a ${ckpt.meta.config.model.name}`);
    if (opts.input !== undefined) throw new DifformerError('DIFFORMER_BAD_OPTION', '--score-reference scores the references of --gen-subset: it cannot be combined with --input');
    generator = buildReferenceScorer(model, genOpts.beam);
  } else {
    generator = buildGenerator(ckpt.meta.config.model.name, model, { task, extra: extra.map((e) => e.model), options: genOpts, seed: common.seed, removeBpe });
  }

  // 3. what to decode: a split, or raw sentences (all at once, or --buffer-size at a time)
  const what = opts.input !== undefined ? 'input' : opts.genSubset;
  // fairseq's resolve_max_positions: the task's and every model's (rerankers read the sources too)
  const maxSourcePositions = Math.min(task.opts.maxSourcePositions, ...[main, ...extra].map((m) => modelPositionLimits(m.ckpt.meta.config.model.options).maxSourcePositions));
  const limits = { maxSourcePositions, maxTokens: opts.maxTokens ?? Infinity };

  // 4. decode and print
  // --results-path: written whole at the end, so a failed run leaves an earlier file intact;
  // checked now, so an unwritable path fails before the decoding, not after it
  const resultsFile = opts.resultsPath ? join(opts.resultsPath, `generate-${what}.txt`) : undefined;
  if (resultsFile) checkWritableFile(resultsFile);
  const results: string[] = [];
  const out: (line: string) => void = opts.resultsPath ? (l) => results.push(l) : (l) => process.stdout.write(`${l}\n`);
  const run = { task, generator, genOpts, opts, removeBpe, out };
  const t0 = Date.now();
  let n = 0;
  let ntok = 0;
  if (opts.input !== undefined) {
    // a person typing gets each sentence back at once (fairseq-interactive); pipes and files
    // are read whole and batched by length unless --buffer-size says otherwise
    const tty = opts.input === '-' && process.stdin.isTTY === true;
    const bufferSize = opts.bufferSize > 0 ? opts.bufferSize : tty ? 1 : Infinity;
    if (tty) log.info(bufferSize === 1 ? 'reading source sentences from the terminal, one per line (Ctrl-D ends)' : `reading source sentences from the terminal, ${bufferSize} at a time (Ctrl-D ends)`);
    const encode = await sourceEncoder(task);
    let offset = 0;
    for await (const lines of inputChunks(opts.input, bufferSize)) {
      const dataset = interactiveDataset(task, encode, lines);
      const indices = fitting(dataset, dataset.length, limits, opts.skipInvalidSizeInputsValidTest, what, offset, bufferSize !== Infinity);
      const r = decodeAndPrint(run, dataset, indices, { rawSources: lines, offset, progress: bufferSize === Infinity, label: what });
      [n, ntok, offset] = [n + indices.length, ntok + r.ntok, offset + lines.length];
    }
  } else {
    const dataset = task.loadDataset(opts.genSubset);
    const first = opts.maxSentences > 0 ? Math.min(opts.maxSentences, dataset.length) : dataset.length;
    const indices = fitting(dataset, first, limits, opts.skipInvalidSizeInputsValidTest, what, 0);
    const r = decodeAndPrint(run, dataset, indices, { offset: 0, progress: true, label: what });
    [n, ntok] = [indices.length, r.ntok];
    // 5. the final score line; skipped sentences are left out, as fairseq never decodes them
    if (dataset.tgt) {
      const [h, ref] = [indices.map((i) => r.hyps[i]!), indices.map((i) => r.refs[i]!)];
      if (task.metric === 'rouge') for (const l of rougeLines(h, ref)) out(`Generate ${opts.genSubset} with beam=${generator.beamLabel}: ${l}`);
      const bleu = opts.sacrebleu ? sacreBleuLines(h, [ref])[0]! : formatFairseqBleu(fairseqBleu(h, ref), 4);
      out(`Generate ${opts.genSubset} with beam=${generator.beamLabel}: ${bleu}`);
    }
  }
  const secs = (Date.now() - t0) / 1000;
  log.info({ sentences: n, tokens: ntok, seconds: secs, sentencesPerSecond: n / Math.max(secs, 1e-6) }, `translated ${n} sentences (${ntok} tokens) in ${secs.toFixed(1)}s (${(n / Math.max(secs, 1e-6)).toFixed(2)} sentences/s, ${(ntok / Math.max(secs, 1e-6)).toFixed(2)} tokens/s)`);
  if (resultsFile) writeFileAtomic(resultsFile, results.map((l) => `${l}\n`).join(''));
  model.dispose();
  for (const e of extra) e.model.dispose();
}

interface DecodeRun {
  task: Task;
  generator: SequenceGenerator;
  genOpts: ReturnType<typeof resolveGeneratorOptions>;
  opts: GenerateOptions;
  removeBpe: string | undefined;
  out: (line: string) => void;
}

/**
 * Decodes `indices` of `dataset` in length-sorted batches and prints their lines: in batch order
 * for a split (fairseq-generate), in input order for raw sentences (fairseq-interactive).
 * Printed ids are `offset` + the dataset's; hyps/refs (post-processed) are by dataset index.
 */
function decodeAndPrint(
  run: DecodeRun,
  dataset: LanguagePairDataset,
  indices: number[],
  where: { rawSources?: string[]; offset: number; progress: boolean; label: string },
): { hyps: string[]; refs: string[]; ntok: number } {
  const { task, generator, genOpts, opts, removeBpe, out } = run;
  const { rawSources, offset } = where;
  const batches = dataset.decodingBatches(indices, opts.maxTokens, opts.batchSize, 64);
  const perId: string[][] | undefined = rawSources ? [] : undefined;
  const hyps: string[] = new Array(dataset.length).fill('');
  const refs: string[] = new Array(dataset.length).fill('');
  const bar = where.progress ? createProgress(`generate ${where.label}`, indices.length, ' | {sps} sent/s') : undefined;
  const t0 = Date.now();
  let done = 0;
  let ntok = 0;
  for (const idx of batches) {
    const batch: Batch = dataset.collate(idx);
    const full = genOpts.retainIterHistory && generator.generateWithHistory ? generator.generateWithHistory(batch) : { hypos: generator.generate(batch), history: undefined };
    const result = full.hypos;
    for (let b = 0; b < batch.bsz; b++) {
      const i = batch.ids[b]!;
      const id = offset + i;
      const say = perId ? (l: string) => (perId[i] ??= []).push(l) : out;
      const srcRow = batch.srcTokens.subarray(b * batch.srcLen, b * batch.srcLen + batch.srcLengths[b]!);
      const srcStr = rawSources ? rawSources[i]! : postProcess(task.srcDict.string(srcRow), removeBpe);
      const hasTarget = dataset.tgt !== undefined && !rawSources;
      const tgtStr = hasTarget ? postProcess(task.tgtDict.string(batch.target.subarray(b * batch.tgtLen, b * batch.tgtLen + batch.tgtLengths[b]!), { escapeUnk: true }), removeBpe) : '';
      if (!opts.quiet) {
        say(`S-${id}\t${srcStr}`);
        if (hasTarget) say(`T-${id}\t${tgtStr}`);
      }
      // fairseq's E-<id>_<step> lines: the argmax tokens after each decoding step
      full.history?.[b]?.forEach((tokens, step) => {
        if (!opts.quiet) say(`E-${id}_${step}\t${postProcess(task.tgtDict.string(tokens), removeBpe)}`);
      });
      result[b]!.slice(0, genOpts.nbest).forEach((h, rank) => {
        const f = formatHypo(h, task.tgtDict, removeBpe);
        if (!opts.quiet) {
          say(`H-${id}\t${f.score}\t${f.str}`);
          say(`D-${id}\t${f.score}\t${f.str}`);
          say(`P-${id}\t${f.pos}`);
          if (opts.printStep && h.steps !== undefined) say(`I-${id}\t${h.steps}`);
        }
        if (rank === 0) {
          hyps[i] = f.str;
          ntok += h.tokens.length;
        }
      });
      refs[i] = tgtStr;
    }
    done += batch.bsz;
    bar?.update(done, { sps: (done / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(1) });
  }
  bar?.stop();
  for (const lines of perId ?? []) for (const l of lines ?? []) out(l);
  return { hyps, refs, ntok };
}

/**
 * The first `first` sentences, checked as fairseq checks sizes before decoding: a source longer
 * than the model's positions (after --truncate-source, when the model was trained with it) or a
 * pair longer than --max-tokens fails with one message, or is skipped with a warning when asked.
 * Messages name sentences by `offset` + index (raw input read in chunks).
 */
function fitting(dataset: LanguagePairDataset, first: number, limits: { maxSourcePositions: number; maxTokens: number }, skip: boolean, what: string, offset: number, chunked = false): number[] {
  const kept: number[] = [];
  const bad: number[] = [];
  for (let i = 0; i < first; i++) {
    const fits = dataset.srcSize(i) <= limits.maxSourcePositions && dataset.sampleTokens(i) <= limits.maxTokens;
    (fits ? kept : bad).push(i);
  }
  if (bad.length === 0) return kept;
  const i = bad[0]!;
  const [src, tgt] = [dataset.srcSize(i), dataset.tgtSize(i)];
  const sizes = `${src} source${dataset.tgt ? ` and ${tgt} target` : ''} tokens (BOS/EOS included)`;
  const overPositions = src > limits.maxSourcePositions;
  const limit = overPositions ? `the model reads at most ${limits.maxSourcePositions} source tokens` : `--max-tokens is ${limits.maxTokens}`;
  const fix = overPositions ? 'skip them with --skip-invalid-size-inputs-valid-test, or train with --truncate-source to cut long sources' : 'raise --max-tokens, or skip them with --skip-invalid-size-inputs-valid-test';
  const count = `${bad.length} sentence${bad.length > 1 ? 's' : ''} too long`;
  if (!skip) throw new DifformerError('DIFFORMER_BAD_DATA', `${what}: sentence ${offset + i} has ${sizes}, but ${limit} (${count}): ${fix}`);
  // (a chunk of streamed input may be skipped whole; the next one may fit)
  if (kept.length === 0 && !chunked) throw new DifformerError('DIFFORMER_BAD_DATA', `${what}: all ${first} sentences are too long (sentence ${i}: ${sizes}, but ${limit}); nothing to decode`);
  const ids = bad.slice(0, 10).map((b) => offset + b);
  getLogger().warn({ skipped: bad.length, firstIds: ids }, `${bad.length} sentence${bad.length > 1 ? 's' : ''} of ${what} skipped (longer than the model or --max-tokens allows; first: ${ids.join(', ')})`);
  return kept;
}

/** Raw text -> the data-bin's pieces (its spm.model), or the text itself without one. */
async function sourceEncoder(task: Task): Promise<(line: string) => string> {
  if (!task.spmModelPath) return (l) => l;
  const { SentencePieceModel } = await import('../data/spm.js');
  const spm = await SentencePieceModel.load(task.spmModelPath);
  return (l) => spm.encodePieces(l).join(' ');
}

/** Raw sentences -> an in-memory dataset encoded like the data-bin (spm.model + dictionary). */
function interactiveDataset(task: Task, encode: (line: string) => string, lines: string[]): LanguagePairDataset {
  const src = new InMemoryDataset(lines.map((l) => task.srcDict.encodeLine(encode(l))));
  return new LanguagePairDataset(src, undefined, task.srcDict, task.tgtDict, task.datasetOptions());
}

/**
 * --input in chunks of `size` sentences (fairseq-interactive's --buffer-size). A file, and stdin
 * read whole (size Infinity), go through the corpus reader once (UTF-8, CRLF, missing file);
 * only stdin in chunks is streamed, so a person typing gets each chunk back as it is complete.
 */
async function* inputChunks(input: string, size: number): AsyncGenerator<string[]> {
  if (input !== '-' || size === Infinity) {
    const lines = readLines(input).lines;
    for (let i = 0; i < lines.length; i += size) yield lines.slice(i, i + size);
    return;
  }
  let chunk: string[] = [];
  for await (const line of streamLines(process.stdin)) {
    chunk.push(line);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}
