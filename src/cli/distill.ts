/**
 * difformer-distill DATA --path TEACHER --destdir DISTILLED: sequence-level knowledge
 * distillation in one command (what fairseq users do with fairseq-generate --gen-subset train,
 * extracting H- lines by id, and fairseq-preprocess --srcdict/--tgtdict; reference-brief 5.6):
 *   1. load the teacher; its dictionaries must be the data-bin's (checkDictionaries)
 *   2. decode --gen-subset (train) in shards of --shard-size sentences; each shard's targets are
 *      written atomically to DISTILLED/.distill-shards/, so an interrupted run continues from the
 *      shards present (a manifest guards against resuming with other settings)
 *   3. assemble in a temporary folder, then rename into place: dict.*.txt and spm.model copied
 *      byte for byte, the subset's source side copied, its target side binarized from the
 *      teacher's output with the SAME dictionary, every other split (valid, test) copied
 *      unchanged; distill.log with counts. The shards are removed unless --keep-shards.
 * Targets keep their subword pieces (no --remove-bpe): they are re-binarized as they are.
 * Source lines that are blank (EOS only) get blank targets without decoding, so ids stay aligned.
 */
import { Command } from 'commander';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import type { Dictionary } from '../data/dictionary.js';
import { IndexedDatasetBuilder } from '../data/indexed_dataset.js';
import type { LanguagePairDataset } from '../data/language_pair_dataset.js';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
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
import { buildGenerator, resolveGeneratorOptions, type AllGenerationOptions } from '../generate/index.js';
import type { SequenceGenerator } from '../generate/generator.js';
import { decodingCommand, loadCheckpointModel, modelPositionLimits, startBackend } from './shared.js';

export interface DistillOptions {
  path: string | undefined;
  destdir: string | undefined;
  genSubset: string;
  batchSize: number | undefined;
  maxTokens: number | undefined;
  shardSize: number;
  keepShards: boolean;
}

export const distillDefaults: Readonly<DistillOptions> = Object.freeze({
  path: undefined,
  destdir: undefined,
  genSubset: 'train',
  batchSize: undefined,
  maxTokens: undefined,
  shardSize: 2000,
  keepShards: false,
});

export const distillOptionTable: OptionTable<DistillOptions> = {
  path: optionalStringFlag('--path', 'the teacher checkpoint (an autoregressive Transformer trained on DATA)', 'FILE'),
  destdir: optionalStringFlag('--destdir', 'the distilled data-bin to write', 'DIR'),
  genSubset: stringFlag('--gen-subset', 'split to distill (the others are copied unchanged)', 'SPLIT'),
  batchSize: intFlag('--batch-size', 'sentences per batch (default 128 unless --max-tokens)', 'N', 1),
  maxTokens: intFlag('--max-tokens', 'tokens per batch', 'N', 1),
  shardSize: intFlag('--shard-size', 'sentences per resumable shard', 'N', 1),
  keepShards: boolFlag('--keep-shards', 'keep DESTDIR/.distill-shards/ (the distilled targets as text) after assembly'),
};

const SHARD_DIR = '.distill-shards';
const MANIFEST = 'manifest.json';

export function buildDistillCommand(argv: string[]): Promise<Command> {
  return decodingCommand(
    argv,
    'distill',
    'sequence-level knowledge distillation: decode the training set with a teacher and binarize its output with the same dictionary',
    'data-bin directory the teacher was trained on',
    distillOptionTable,
    distillDefaults,
    runDistill,
  );
}

/** What must match for shards of an earlier run to be reused. */
interface Manifest {
  teacher: { file: string; numUpdates: number; arch: string };
  subset: string;
  sentences: number;
  dictionaries: { src: string; tgt: string };
  shardSize: number;
  generation: AllGenerationOptions;
  seed: number;
}

function shardName(k: number): string {
  return `shard-${String(k).padStart(5, '0')}.txt`;
}

/** Checks an earlier run's manifest, or writes this run's; returns the shards already done. */
function prepareShards(dir: string, manifest: Manifest, nShards: number, shardLen: (k: number) => number): Set<number> {
  const log = getLogger();
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(dir)) if (f.includes('.tmp-')) rmSync(join(dir, f), { force: true }); // a killed run's half files
  const path = join(dir, MANIFEST);
  if (existsSync(path)) {
    const old = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const now = JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>;
    const differ = Object.keys(now).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(now[k]));
    if (differ.length > 0) {
      throw new DifformerError(
        'DIFFORMER_BAD_OPTION',
        `${dir} holds shards of a distillation with other settings (${differ.join(', ')} differ); rerun with the same flags, or remove ${dir} to start over`,
      );
    }
  } else {
    writeFileAtomic(path, `${JSON.stringify(manifest, null, 2)}\n`);
  }
  const done = new Set<number>();
  for (let k = 0; k < nShards; k++) {
    const p = join(dir, shardName(k));
    if (!existsSync(p)) continue;
    const lines = readFileSync(p, 'utf8').split('\n').length - 1;
    if (lines === shardLen(k)) done.add(k);
    else log.warn({ shard: k, lines, expected: shardLen(k) }, `${p} has ${lines} lines, expected ${shardLen(k)}: decoding it again`);
  }
  return done;
}

export interface DistillResult {
  sentences: number;
  shards: number;
  resumedShards: number;
  decodeSeconds: number;
  tokens: number;
  unk: number;
}

export async function runDistill(data: string, parsed: Record<string, unknown>): Promise<DistillResult> {
  const log = getLogger();
  const t0 = Date.now();
  const opts = resolveOptions(distillDefaults, readOptions(distillOptionTable, parsed));
  const common = resolveOptions(commonDefaults, readOptions(commonOptionTable, parsed));
  if (!opts.path) throw new DifformerError('DIFFORMER_BAD_OPTION', '--path is required: the teacher checkpoint (trained with difformer-train on DATA)');
  if (!opts.destdir) throw new DifformerError('DIFFORMER_BAD_OPTION', '--destdir is required: where to write the distilled data-bin');
  if (!(opts.shardSize > 0)) throw new DifformerError('DIFFORMER_BAD_OPTION', `--shard-size must be positive, got ${opts.shardSize}`);
  if (resolve(opts.destdir) === resolve(data)) throw new DifformerError('DIFFORMER_BAD_OPTION', '--destdir must differ from the data-bin (valid/test are copied, the training targets replaced)');
  const destdir = opts.destdir;
  const shardDir = join(destdir, SHARD_DIR);
  // a finished distillation (no shards left) is never overwritten; checked before the slow start-up
  if (existsSync(destdir) && !existsSync(shardDir) && readdirSync(destdir).some((f) => /^dict\..+\.txt$/.test(f))) {
    throw new DifformerError('DIFFORMER_NOT_WRITABLE', `${destdir} already holds a data-bin: remove it, or choose another --destdir`);
  }

  // 1. teacher, task and the split to distill
  await startBackend(common);
  const { ckpt, model, task } = await loadCheckpointModel(opts.path, data, common.seed);
  const teacher = ckpt.meta;
  const [src, tgt] = [task.sourceLang, task.targetLang];
  const dataset = task.loadDataset(opts.genSubset);
  const n = dataset.length;
  const genOpts = resolveGeneratorOptions(parsed);
  const generator = buildGenerator(teacher.config.model.name, model, { task, extra: [], options: genOpts, seed: common.seed });
  log.info({ teacher: opts.path, arch: teacher.config.model.arch, subset: opts.genSubset, sentences: n, beam: generator.beamLabel }, `distilling ${n} ${opts.genSubset} sentences with ${opts.path} (${teacher.config.model.arch}, beam ${generator.beamLabel})`);

  // sources the teacher has no positions for (it was trained without --truncate-source)
  const maxSrc = Math.min(task.opts.maxSourcePositions, modelPositionLimits(teacher.config.model.options).maxSourcePositions);
  // and pairs over --max-tokens, which batching would drop unseen (batches hold max(source, target))
  let tooLong = 0;
  const maxTokens = opts.maxTokens ?? Infinity;
  for (let i = 0; i < n; i++) {
    const src = dataset.srcSize(i);
    if (src > maxSrc) {
      if (dataset.src.sizes[i]! > 1) tooLong++;
    } else if (dataset.sampleTokens(i) > maxTokens) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', `${opts.genSubset}: sentence ${i} has ${dataset.sampleTokens(i)} tokens (source or target, BOS/EOS included), more than --max-tokens ${maxTokens}: raise --max-tokens or use --batch-size`);
    }
  }
  if (tooLong > 0) log.warn({ sentences: tooLong, maxSourcePositions: maxSrc }, `${tooLong} sources are longer than the teacher's ${maxSrc} positions: they keep their original targets`);

  // 2. decode shard by shard
  const nShards = Math.ceil(n / opts.shardSize);
  const shardStart = (k: number) => k * opts.shardSize;
  const shardLen = (k: number) => Math.min(n, (k + 1) * opts.shardSize) - shardStart(k);
  const manifest: Manifest = {
    teacher: { file: basename(opts.path), numUpdates: teacher.progress.numUpdates, arch: teacher.config.model.arch },
    subset: opts.genSubset,
    sentences: n,
    dictionaries: { src: task.srcDict.hash(), tgt: task.tgtDict.hash() },
    shardSize: opts.shardSize,
    generation: genOpts,
    seed: common.seed,
  };
  const done = prepareShards(shardDir, manifest, nShards, shardLen);
  if (done.size > 0) log.info({ shards: nShards, present: done.size }, `resuming: ${done.size} of ${nShards} shards already decoded`);
  const already = [...done].reduce((a, k) => a + shardLen(k), 0);
  const bar = createProgress(`distill ${opts.genSubset}`, n, ' | {sps} sent/s');
  bar.update(already, { sps: '-' });
  const tDecode = Date.now();
  let decoded = 0;
  for (let k = 0; k < nShards; k++) {
    if (done.has(k)) continue;
    const tShard = Date.now();
    const lines = decodeShard(dataset, generator.generate.bind(generator), task.tgtDict, shardStart(k), shardLen(k), opts, maxSrc, (inShard) => {
      const secs = Math.max(1e-3, (Date.now() - tDecode) / 1000);
      bar.update(already + decoded + inShard, { sps: ((decoded + inShard) / secs).toFixed(1) });
    });
    writeFileAtomic(join(shardDir, shardName(k)), lines.map((l) => `${l}\n`).join(''));
    decoded += lines.length;
    const secs = (Date.now() - tShard) / 1000;
    log.info({ shard: k, shards: nShards, sentences: lines.length, seconds: secs }, `shard ${k + 1}/${nShards}: ${lines.length} sentences in ${secs.toFixed(1)}s (${(lines.length / Math.max(secs, 1e-6)).toFixed(1)} sentences/s)`);
  }
  bar.stop();
  model.dispose();
  const decodeSeconds = (Date.now() - tDecode) / 1000;

  // 3. assemble the data-bin
  const stats = assemble(data, destdir, task, dataset, opts.genSubset, nShards, shardDir);
  const result: DistillResult = { sentences: n, shards: nShards, resumedShards: done.size, decodeSeconds, tokens: stats.tokens, unk: stats.unk };
  const sps = decoded / Math.max(decodeSeconds, 1e-6);
  const logLines = [
    `${new Date().toISOString()} | distill ${JSON.stringify({ data, ...opts, generation: genOpts, seed: common.seed })}`,
    `teacher ${opts.path}: ${teacher.config.model.arch}, ${teacher.progress.numUpdates} updates, epoch ${teacher.progress.epoch}`,
    `[${src}] Dictionary: ${task.srcDict.size} types (copied)`,
    `[${tgt}] Dictionary: ${task.tgtDict.size} types (copied)`,
    `[${tgt}] ${opts.genSubset}: ${n} sents, ${stats.tokens} tokens, ${((100 * stats.unk) / Math.max(1, stats.tokens)).toFixed(3)}% replaced by <unk> (distilled)`,
    `[${opts.genSubset}] ${stats.blank} blank targets (blank sources, or an empty teacher output)`,
    ...(tooLong > 0 ? [`[${opts.genSubset}] ${tooLong} sources longer than the teacher's ${maxSrc} positions kept their original targets`] : []),
    `decoded ${decoded} sentences in ${decodeSeconds.toFixed(1)}s (${sps.toFixed(2)} sentences/s); ${done.size} of ${nShards} shards reused from an earlier run`,
    `copied unchanged: ${stats.copied.join(', ')}`,
    `Wrote distilled data to ${destdir}`,
  ];
  writeFileSync(join(destdir, 'distill.log'), `${logLines.join('\n')}\n`);
  if (!opts.keepShards) rmSync(shardDir, { recursive: true, force: true });
  log.info({ destdir, sentences: n, tokens: stats.tokens, seconds: (Date.now() - t0) / 1000, sentencesPerSecond: sps }, `wrote distilled data to ${destdir} (${n} sentences, ${sps.toFixed(2)} sentences/s)`);
  return result;
}

/** Teacher outputs (token strings, subwords kept) for ids start..start+len-1, in id order. */
function decodeShard(
  dataset: LanguagePairDataset,
  generate: SequenceGenerator['generate'],
  dict: Dictionary,
  start: number,
  len: number,
  opts: DistillOptions,
  maxSourcePositions: number,
  onProgress: (doneInShard: number) => void,
): string[] {
  const out: string[] = new Array(len).fill('');
  // a blank source is just EOS on disk: nothing to decode; a source longer than the teacher
  // reads keeps its original target (the student skips or cuts it as it would the original)
  const ids: number[] = [];
  for (let i = start; i < start + len; i++) {
    if (dataset.src.sizes[i]! <= 1) continue;
    if (dataset.srcSize(i) <= maxSourcePositions) ids.push(i);
    else out[i - start] = dataset.tgt ? dict.string(dataset.tgt.get(i)) : '';
  }
  const batches = dataset.decodingBatches(ids, opts.maxTokens, opts.batchSize, 128);
  let done = len - ids.length;
  for (const idx of batches) {
    const batch = dataset.collate(idx);
    const hypos = generate(batch);
    for (let b = 0; b < batch.bsz; b++) out[batch.ids[b]! - start] = dict.string(hypos[b]![0]?.tokens ?? []);
    done += batch.bsz;
    onProgress(done);
  }
  return out;
}

interface AssembleStats {
  tokens: number;
  unk: number;
  blank: number;
  copied: string[];
}

/** Builds the distilled data-bin in a temporary folder and renames it into place. */
function assemble(data: string, destdir: string, task: Task, dataset: LanguagePairDataset, subset: string, nShards: number, shardDir: string): AssembleStats {
  const [src, tgt] = [task.sourceLang, task.targetLang];
  const tmp = join(destdir, `.distill-tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    // the target file the task reads (a de-en data-bin read en->de keeps its de-en names)
    const replaced = `${basename(task.splitPrefix(subset) ?? `${subset}.${src}-${tgt}.`)}${tgt}`;
    const copied: string[] = [];
    for (const f of readdirSync(data).sort()) {
      const keep = /^dict\..+\.txt$/.test(f) || f === 'spm.model' || /\.(bin|idx)$/.test(f);
      if (!keep || f === `${replaced}.bin` || f === `${replaced}.idx`) continue;
      copyFileSync(join(data, f), join(tmp, f));
      copied.push(f);
    }
    const dict = task.tgtDict;
    const builder = new IndexedDatasetBuilder(join(tmp, replaced), dict.size);
    const stats: AssembleStats = { tokens: 0, unk: 0, blank: 0, copied };
    for (let k = 0; k < nShards; k++) {
      const lines = readFileSync(join(shardDir, shardName(k)), 'utf8').split('\n');
      lines.pop(); // the final newline
      for (const line of lines) {
        const ids = dict.encodeLine(line);
        stats.tokens += ids.length;
        for (const id of ids) if (id === dict.unkIndex) stats.unk++;
        if (line === '') stats.blank++;
        builder.add(ids);
      }
    }
    builder.finish();
    const written = idxCount(join(tmp, replaced));
    if (written !== dataset.length) throw new Error(`distilled ${written} targets for ${dataset.length} sources`);
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(destdir, f));
    return stats;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Sentence count from an .idx header (MMIDIDX, see indexed_dataset.ts): a check before renaming. */
function idxCount(prefix: string): number {
  return Number(readFileSync(`${prefix}.idx`).readBigUInt64LE(18));
}
