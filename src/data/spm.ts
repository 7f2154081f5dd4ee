/**
 * SentencePiece for difformer-preprocess, as fairseq uses it (scripts/spm_train.py +
 * spm_encode --output_format=piece, and --remove-bpe sentencepiece at generation time).
 *
 * - Learning: the TypeScript learner (spm_train.ts), which needs nothing beyond `npm ci`, or
 *   Debian's `spm_train` when it is on PATH and chosen (see `useSystemSpmTrain`).
 * - Encoding: @sctg/sentencepiece-js, the SentencePiece C++ engine compiled to wasm, loading
 *   the same `.model` protobuf that `spm_encode` loads.
 *
 * Normalisation: every text is passed through `normalizeText` (NFKC + whitespace cleanup)
 * before it reaches a model; our models carry spm's 'identity' rule, so encoding raw text with
 * `spm_encode` directly gives the same pieces only for text that is already NFKC-normal.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, createWriteStream, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SentencePieceProcessor } from '@sctg/sentencepiece-js';
import { DifformerError } from '../errors.js';
import { PieceType, decodeModelProto, type ModelProto } from './spm_proto.js';
import { WS, learnSentencePiece, normalizeText } from './spm_train.js';

export { normalizeText } from './spm_train.js';

export interface TrainSentencePieceOptions {
  /** Training lines (for a joined model: source and target lines together). */
  inputs: AsyncIterable<string> | Iterable<string>;
  vocabSize: number;
  modelType: 'bpe' | 'unigram';
  outputPath: string;
  seed?: number;
  characterCoverage?: number;
  /** Sample at most this many lines (default 2,000,000). */
  inputSentenceSize?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * true: use `spm_train` (error if it is not on PATH); false: the TypeScript learner;
   * 'auto' (default): decided per model type by AUTO_SYSTEM below.
   */
  useSystemSpmTrain?: boolean | 'auto';
}

export interface TrainSentencePieceResult {
  path: string;
  engine: 'typescript' | 'spm_train';
  seconds: number;
}

/**
 * Which model types 'auto' hands to spm_train when it is installed. Measured on gettext-de-en
 * train (800k lines de+en, vocab 8000, 2 cores): BPE 15 s TS vs 32 s spm_train, unigram 72 s
 * vs 106 s (1.1 GB); valid-set pieces/line equal to 0.1% for both. spm_train is therefore not
 * better here, and the TypeScript learner gives the same model on every machine.
 */
const AUTO_SYSTEM: Record<'bpe' | 'unigram', boolean> = { bpe: false, unigram: false };

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Learns a SentencePiece model and writes it to `outputPath` atomically (temp file + rename). */
export async function trainSentencePiece(opts: TrainSentencePieceOptions): Promise<TrainSentencePieceResult> {
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < 4) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--spm-vocab-size must be an integer >= 4, got ${opts.vocabSize}`);
  }
  const t0 = performance.now();
  const mode = opts.useSystemSpmTrain ?? 'auto';
  const system = mode === false ? undefined : findOnPath('spm_train');
  if (mode === true && !system) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', 'spm_train was requested but is not on PATH (apt-get install sentencepiece)');
  }
  const engine = system && (mode === true || AUTO_SYSTEM[opts.modelType]) ? 'spm_train' : 'typescript';
  const tmp = `${opts.outputPath}.tmp-${process.pid}`;
  try {
    if (engine === 'spm_train') {
      await runSpmTrain(system!, opts, tmp);
    } else {
      const bytes = await learnSentencePiece(opts.inputs, {
        vocabSize: opts.vocabSize, modelType: opts.modelType, seed: opts.seed,
        characterCoverage: opts.characterCoverage, inputSentenceSize: opts.inputSentenceSize,
        onProgress: opts.onProgress,
      });
      writeFileSync(tmp, bytes);
    }
    renameSync(tmp, opts.outputPath);
  } catch (e) {
    rmSync(tmp, { force: true });
    // File-system failures (EACCES, ENOENT, ENOSPC, ...) are the user's to fix; anything else is a bug.
    if (typeof (e as NodeJS.ErrnoException).code === 'string' && !(e instanceof DifformerError)) {
      throw new DifformerError('DIFFORMER_NOT_WRITABLE', `cannot write SentencePiece model ${opts.outputPath}: ${(e as Error).message}`, { cause: e });
    }
    throw e;
  }
  return { path: opts.outputPath, engine, seconds: (performance.now() - t0) / 1000 };
}

/** Runs Debian's spm_train on the normalised lines with the same settings as our learner. */
async function runSpmTrain(bin: string, opts: TrainSentencePieceOptions, tmp: string): Promise<void> {
  const text = `${tmp}.txt`;
  const prefix = `${tmp}.spm`;
  try {
    let n = 0;
    const inputs = opts.inputs;
    await pipeline(Readable.from((async function* () {
      for await (const raw of inputs) {
        const line = normalizeText(raw);
        if (line) { n++; yield line + '\n'; }
      }
    })()), createWriteStream(text));
    if (n === 0) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', 'cannot learn a SentencePiece model: the training text has no non-empty lines');
    const args = [
      `--input=${text}`, `--model_prefix=${prefix}`, `--vocab_size=${opts.vocabSize}`,
      `--model_type=${opts.modelType}`, `--character_coverage=${opts.characterCoverage ?? 0.9995}`,
      `--input_sentence_size=${opts.inputSentenceSize ?? 2_000_000}`, '--shuffle_input_sentence=true',
      '--normalization_rule_name=identity', `--random_seed=${opts.seed ?? 1}`,
      `--num_threads=${Math.min(16, availableParallelism())}`,
    ];
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let tail = '';
    let pending = '';
    let seeds = 0;
    let em = 0;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        // Progress from spm's log: BPE "Added: ... size=N", unigram EM rounds.
        const bpe = /Added: freq=\d+ size=(\d+)/.exec(l);
        if (bpe) opts.onProgress?.(Number(bpe[1]), opts.vocabSize);
        const seed = /Initialized (\d+) seed/.exec(l);
        if (seed) seeds = Number(seed[1]);
        if (/EM sub_iter=/.test(l) && seeds > 0) {
          const rounds = Math.ceil(Math.log(seeds / (1.1 * opts.vocabSize)) / Math.log(4 / 3)) + 1;
          opts.onProgress?.(Math.min(++em, 2 * rounds), 2 * rounds);
        }
      }
    });
    const [code] = (await once(child, 'close').catch((e: Error) => {
      throw new DifformerError('DIFFORMER_BACKEND', `cannot run ${bin}: ${e.message}`, { cause: e });
    })) as [number | null];
    if (code !== 0) {
      const msg = tail.trim().split('\n').slice(-3).join(' | ');
      const user = /Vocabulary size (too high|is smaller)/.test(tail);
      throw new DifformerError(user ? 'DIFFORMER_BAD_OPTION' : 'DIFFORMER_BACKEND', `spm_train failed: ${msg}`);
    }
    renameSync(`${prefix}.model`, tmp);
    opts.onProgress?.(1, 1);
  } finally {
    rmSync(text, { force: true });
    rmSync(`${prefix}.model`, { force: true });
    rmSync(`${prefix}.vocab`, { force: true });
  }
}

// ------------------------------------------------------------------ encoding

/** Routes the engine's stdout (console.log, bound when its wasm module is created) to stderr. */
async function withStdoutOnStderr<T>(fn: () => Promise<T>): Promise<T> {
  const { log, info } = console;
  console.log = console.info = (...args: unknown[]) => console.error(...args);
  try {
    return await fn();
  } finally {
    console.log = log;
    console.info = info;
  }
}

const CACHE_LIMIT = 1_000_000;

export class SentencePieceModel {
  private readonly cache = new Map<string, string[]>();
  private readonly control: Set<string>;
  private readonly unkId: number;

  private constructor(
    private readonly spp: SentencePieceProcessor,
    readonly proto: ModelProto,
    /** Words can be encoded one by one (and cached) when no piece spans a word boundary. */
    private readonly perWord: boolean,
  ) {
    this.control = new Set(proto.pieces.filter((p) => p.type === PieceType.CONTROL).map((p) => p.piece));
    this.unkId = proto.pieces.findIndex((p) => p.type === PieceType.UNKNOWN);
  }

  /**
   * Loads a `.model` file; DIFFORMER_FILE_NOT_FOUND / DIFFORMER_BAD_DATA for user mistakes.
   * With `cacheWords` (default) each distinct word is encoded once by the engine and cached,
   * which is exact for models whose pieces never span a "▁" boundary (checked here). The one
   * difference from whole-line encoding: unigram Viterbi ties between equally scored
   * segmentations depend on float rounding of the line prefix, so ~1 line in 10^4 can come out
   * as a different equally likely segmentation than `spm_encode` gives; BPE is unaffected.
   */
  static async load(path: string, opts: { cacheWords?: boolean } = {}): Promise<SentencePieceModel> {
    if (!existsSync(path)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `SentencePiece model ${path}: file not found`);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new DifformerError('DIFFORMER_FILE_UNREADABLE', `cannot read SentencePiece model ${path}: ${(e as Error).message}`, { cause: e });
    }
    let proto: ModelProto;
    try {
      proto = decodeModelProto(bytes);
    } catch (e) {
      throw new DifformerError('DIFFORMER_BAD_DATA', `${path}: ${(e as Error).message}`, { cause: e });
    }
    const spp = new SentencePieceProcessor();
    await withStdoutOnStderr(() => spp.loadFromB64StringModel(bytes.toString('base64')));
    const status = String(spp.processor.status().ToString());
    if (status !== 'OK') throw new DifformerError('DIFFORMER_BAD_DATA', `${path}: SentencePiece cannot load this model (${status})`);
    const ns = proto.normalizerSpec;
    const perWord = opts.cacheWords !== false && ns.addDummyPrefix !== false && ns.escapeWhitespaces !== false && ns.removeExtraWhitespaces !== false &&
      proto.trainerSpec.treatWhitespaceAsSuffix !== true && proto.pieces.every((p) => p.piece.indexOf(WS, 1) < 0);
    return new SentencePieceModel(spp, proto, perWord);
  }

  get vocabSize(): number {
    return this.proto.pieces.length;
  }

  /** Pieces of one line (after `normalizeText`); unknown characters come out as their text. */
  encodePieces(line: string): string[] {
    const text = normalizeText(line);
    if (text.length === 0) return [];
    if (!this.perWord) return this.spp.encodePieces(text);
    const out: string[] = [];
    for (const word of text.split(' ')) {
      let pieces = this.cache.get(word);
      if (!pieces) {
        pieces = this.encodeWord(word);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, pieces);
      }
      for (const p of pieces) out.push(p);
    }
    return out;
  }

  /** Ids are much cheaper than piece strings to get out of the wasm engine; strings come from the proto. */
  private encodeWord(word: string): string[] {
    const ids = this.spp.encodeIds(word);
    if (ids.includes(this.unkId)) return this.spp.encodePieces(word);
    return ids.map((id) => this.proto.pieces[id]!.piece);
  }

  /** Inverse of encodePieces (spm's decoding for surface pieces): concatenate, "▁" -> space. */
  decodePieces(pieces: string[]): string {
    const text = pieces.filter((p) => !this.control.has(p)).join('').replace(/\u2581/g, ' ');
    return this.proto.normalizerSpec.addDummyPrefix === false ? text : text.replace(/^ /, '');
  }
}

/** fairseq's `--remove-bpe sentencepiece`: space-joined pieces back to text. */
export function removeSentencePiece(text: string): string {
  return text.replace(/ /g, '').replace(/\u2581/g, ' ').trim();
}
