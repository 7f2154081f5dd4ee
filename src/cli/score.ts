/**
 * difformer-score: fairseq-score's flags and output (fairseq_cli/score.py, v0.10.2) plus
 * sacreBLEU and ROUGE. `--sys -` (the default) reads the system output from stdin.
 *   bleu       corpus BLEU on whitespace tokens, as fairseq/multi-bleu: "BLEU4 = ..."
 *   sacrebleu  sacreBLEU's corpus BLEU with its tokenizer (13a default) and signature
 *   rouge      ROUGE-1/2/L precision/recall/F as Google's rouge-score (optional Porter stemmer)
 */
import { readLines } from '../data/text.js';
import { DifformerError } from '../errors.js';
import { fairseqScoreLines, rougeLines, sacreBleuLines, sacreTokenize } from '../metrics/index.js';
import { boolFlag, choiceFlag, intFlag, optionalStringFlag, stringFlag, type OptionTable } from '../options.js';

export interface ScoreOptions {
  sys: string;
  ref: string | undefined;
  order: number;
  ignoreCase: boolean;
  sentenceBleu: boolean;
  metric: 'bleu' | 'sacrebleu' | 'rouge';
  sacrebleu: boolean;
  tokenize: 'none' | '13a' | 'intl' | undefined;
  stemmer: boolean;
  anisotropy: boolean;
  sourceReliance: string | undefined;
  genSubset: string;
  numSentences: number;
  path: string | undefined;
}

export const scoreDefaults: Readonly<ScoreOptions> = Object.freeze({
  sys: '-',
  ref: undefined,
  order: 4,
  ignoreCase: false,
  sentenceBleu: false,
  metric: 'bleu',
  sacrebleu: false,
  tokenize: undefined,
  stemmer: false,
  anisotropy: false,
  sourceReliance: undefined,
  genSubset: 'valid',
  numSentences: 200,
  path: undefined,
});

export const scoreOptionTable: OptionTable<ScoreOptions> = {
  sys: { ...stringFlag('--sys', "system output file ('-' = stdin)", 'FILE'), short: '-s' },
  ref: { ...optionalStringFlag('--ref', 'references file', 'FILE'), short: '-r' },
  order: { ...intFlag('--order', 'consider n-grams up to this order', 'N', 1), short: '-o' },
  ignoreCase: boolFlag('--ignore-case', 'case-insensitive scoring'),
  sentenceBleu: boolFlag('--sentence-bleu', 'report sentence-level BLEU (with +1 smoothing), one line per sentence'),
  metric: choiceFlag('--metric', 'what to compute', ['bleu', 'sacrebleu', 'rouge'] as const),
  sacrebleu: boolFlag('--sacrebleu', "same as --metric sacrebleu (fairseq-score's flag)"),
  tokenize: {
    ...choiceFlag('--tokenize', 'tokenizer for --metric sacrebleu (default 13a); for bleu, text is split on whitespace unless this is given', [
      'none',
      '13a',
      'intl',
    ] as const),
    shownDefault: '13a for sacrebleu, whitespace for bleu',
  },
  stemmer: boolFlag('--stemmer', 'ROUGE: Porter-stem tokens longer than 3 characters (rouge-score use_stemmer)'),
  anisotropy: boolFlag('--anisotropy', "report the anisotropy (the paper's Eq. 5) of the embedding table of --path"),
  sourceReliance: optionalStringFlag(
    '--source-reliance',
    "diffusion checkpoint (--path): token accuracy of one denoising pass with each sentence's source vs the next sentence's, on DATA_BIN's --gen-subset",
    'DATA_BIN',
  ),
  genSubset: stringFlag('--gen-subset', 'split for --source-reliance', 'SPLIT'),
  numSentences: intFlag('--num-sentences', 'sentences for --source-reliance (the first N with a target)', 'N', 1),
  path: optionalStringFlag('--path', 'checkpoint for --anisotropy and --source-reliance', 'FILE'),
};

/**
 * Anisotropy of a checkpoint's (target) embedding table over its real tokens: special symbols
 * and madeupword padding are left out.
 */
async function anisotropyLines(path: string): Promise<string[]> {
  const { loadCheckpoint } = await import('../train/checkpoint.js');
  const { anisotropy, selfRoundingRate } = await import('../metrics/anisotropy.js');
  const ckpt = loadCheckpoint(path);
  const name = ['decoder.embed_tokens.weight', 'encoder.embed_tokens.weight'].find((n) => ckpt.weights.has(n));
  if (!name) throw new DifformerError('DIFFORMER_BAD_CHECKPOINT', `${path} has no embedding table (decoder.embed_tokens.weight)`);
  const w = ckpt.weights.get(name)!;
  const [v, d] = w.shape as [number, number];
  const symbols = ckpt.meta.dictionaries.tgt.symbols;
  const exclude = symbols.map((sym, i) => (i < 4 || sym.startsWith('madeupword') ? i : -1)).filter((i) => i >= 0);
  const value = anisotropy(w.data as Float32Array, v, d, { exclude });
  const rounding = selfRoundingRate(w.data as Float32Array, v, d, { exclude });
  return [
    `Anisotropy = ${value.toFixed(4)} (${name}: ${v - exclude.length} tokens x ${d} dims)`,
    `Self-rounding = ${rounding.toFixed(4)} (share of those tokens whose own embedding wins argmax z·Eᵀ)`,
  ];
}

/** The source-reliance table of a diffusion checkpoint at five timesteps from T-1 down to 0. */
async function sourceRelianceLines(path: string, data: string, subset: string, n: number): Promise<string[]> {
  const { registerBuiltins } = await import('./builtins.js');
  const { loadCheckpointModel, modelPositionLimits, startBackend } = await import('./shared.js');
  const { commonDefaults } = await import('../options.js');
  const { isDenoiserProbe, sourceReliance } = await import('../metrics/source_reliance.js');
  registerBuiltins();
  await startBackend(commonDefaults);
  const { model, task, ckpt } = await loadCheckpointModel(path, data, 1);
  if (!isDenoiserProbe(model)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--source-reliance needs a diffusion model (difformer, diff_lm); ${path} holds a ${ckpt.meta.config.model.name}`);
  }
  const ds = task.loadDataset(subset);
  if (!ds.tgt) throw new DifformerError('DIFFORMER_BAD_DATA', `--source-reliance needs targets: ${subset} has none`);
  // the first n non-empty pairs the model has positions for, in batches of similar length
  const cfg = ckpt.meta.config.model.options as { diffusionSteps?: number };
  const limits = { maxTokens: 6000, batchSize: 100, requiredBatchSizeMultiple: 1, ...modelPositionLimits(ckpt.meta.config.model.options) };
  const kept = ds.validIndices(limits, true).kept.slice(0, n);
  if (kept.length < 2) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `--source-reliance needs at least 2 non-empty pairs in ${subset} that fit the model`);
  const steps = cfg.diffusionSteps ?? 2000;
  const ts = [steps - 1, (3 * steps) / 4, steps / 2, steps / 4, 0].map(Math.floor);
  const sums = ts.map((t) => ({ t, right: 0, wrong: 0, tokens: 0 }));
  for (const idx of ds.batches(kept, limits)) {
    if (idx.length < 2) continue; // a lone sentence has no other source to swap in
    sourceReliance(model, ds.collate(idx), ts, { bos: task.tgtDict.bosIndex, eos: task.tgtDict.eosIndex }).forEach((r, i) => {
      sums[i]!.right += r.right;
      sums[i]!.wrong += r.wrong;
      sums[i]!.tokens += r.tokens;
    });
  }
  const acc = (x: number, total: number): string => (total > 0 ? x / total : 0).toFixed(4);
  return [
    `Source reliance on ${subset} (${kept.length} sentences, ${sums[0]!.tokens} target tokens; one denoising pass from z_t with the gold length):`,
    ...sums.map((r) => {
      const d = (r.right - r.wrong) / Math.max(1, r.tokens);
      return `t=${r.t}\taccuracy ${acc(r.right, r.tokens)} with its own source, ${acc(r.wrong, r.tokens)} with the next sentence's (${d >= 0 ? '+' : '-'}${Math.abs(d).toFixed(4)})`;
    }),
  ];
}


/** Computes the requested score and returns the lines to print (also printed to stdout). */
export async function runScore(opts: ScoreOptions, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<string[]> {
  if (opts.anisotropy) {
    if (!opts.path) throw new DifformerError('DIFFORMER_BAD_OPTION', '--anisotropy needs --path CHECKPOINT');
    const lines = await anisotropyLines(opts.path);
    for (const l of lines) out(l);
    return lines;
  }
  if (opts.sourceReliance !== undefined) {
    if (!opts.path) throw new DifformerError('DIFFORMER_BAD_OPTION', '--source-reliance needs --path CHECKPOINT');
    const lines = await sourceRelianceLines(opts.path, opts.sourceReliance, opts.genSubset, opts.numSentences);
    for (const l of lines) out(l);
    return lines;
  }
  if (!opts.ref) throw new DifformerError('DIFFORMER_BAD_OPTION', '--ref is required');
  const ref = readLines(opts.ref).lines;
  const sys = readLines(opts.sys).lines;
  if (sys.length !== ref.length) {
    throw new DifformerError(
      'DIFFORMER_LINE_COUNT_MISMATCH',
      `system output and references differ in length: ${opts.sys === '-' ? 'stdin' : opts.sys} has ${sys.length} lines, ${opts.ref} has ${ref.length}`,
    );
  }
  if (ref.length === 0) throw new DifformerError('DIFFORMER_EMPTY_CORPUS', `empty corpus: ${opts.ref} has no lines`);
  const metric = opts.sacrebleu ? 'sacrebleu' : opts.metric;
  const lines: string[] = [];
  switch (metric) {
    case 'bleu': {
      // fairseq BLEU splits on whitespace; --tokenize 13a/intl tokenizes both sides first
      const tok = opts.tokenize && opts.tokenize !== 'none' ? opts.tokenize : undefined;
      const prep = (l: string) => (tok ? sacreTokenize(l, tok) : l);
      lines.push(...fairseqScoreLines(sys.map(prep), ref.map(prep), { order: opts.order, ignoreCase: opts.ignoreCase, sentenceBleu: opts.sentenceBleu }));
      break;
    }
    case 'sacrebleu': {
      lines.push(...sacreBleuLines(sys, [ref], { tokenize: opts.tokenize ?? '13a', lowercase: opts.ignoreCase }));
      break;
    }
    case 'rouge': {
      lines.push(...rougeLines(sys, ref, { stemmer: opts.stemmer }));
      break;
    }
    default: {
      const never: never = metric;
      throw new Error(`unhandled metric ${String(never)}`);
    }
  }
  for (const l of lines) out(l);
  return lines;
}
