/**
 * difformer-average-checkpoints: fairseq's scripts/average_checkpoints.py with the best-N order
 * fixed (see src/train/average.ts). Pipeline:
 *   1. expand --inputs (directories list their checkpoints; files are taken as given)
 *   2. select: --num-best-checkpoints N (by the metric in the file name, in the metric's
 *      direction), --num-epoch-checkpoints N / --num-update-checkpoints N (newest first, at most
 *      --checkpoint-upper-bound), or all given files
 *   3. average the model weights and write --output atomically
 *
 *   difformer-average-checkpoints --inputs CKPTS --num-best-checkpoints 5 --output CKPTS/checkpoint_best5.safetensors
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DifformerError } from '../errors.js';
import { getLogger } from '../log.js';
import { boolFlag, intFlag, optionalStringFlag, type OptionTable } from '../options.js';
import { createProgress } from '../progress.js';
import { CHECKPOINT_EXT } from '../train/checkpoint.js';
import { averageCheckpointFiles, metricDirection, parseCheckpointName, readCheckpointMeta, selectCheckpoints, type Selection } from '../train/average.js';

export interface AverageOptions {
  /** Files or directories (a variadic flag, added by `configureAverageCommand`). */
  inputs: string[];
  output: string | undefined;
  numBestCheckpoints: number;
  numEpochCheckpoints: number;
  numUpdateCheckpoints: number;
  checkpointUpperBound: number | undefined;
  maximize: boolean | undefined;
  minimize: boolean | undefined;
}

export const averageDefaults: Readonly<AverageOptions> = Object.freeze({
  inputs: [],
  output: undefined,
  numBestCheckpoints: 0,
  numEpochCheckpoints: 0,
  numUpdateCheckpoints: 0,
  checkpointUpperBound: undefined,
  maximize: undefined,
  minimize: undefined,
});

export const averageOptionTable: OptionTable<AverageOptions> = {
  inputs: null,
  output: optionalStringFlag('--output', 'write the averaged checkpoint here', 'FILE'),
  numBestCheckpoints: intFlag('--num-best-checkpoints', 'average the N best checkpoint.best_<metric>_<value> files (best first by the metric)'),
  numEpochCheckpoints: intFlag('--num-epoch-checkpoints', 'average the N newest checkpoint<epoch> files'),
  numUpdateCheckpoints: intFlag('--num-update-checkpoints', 'average the N newest checkpoint_<epoch>_<updates> files'),
  checkpointUpperBound: intFlag('--checkpoint-upper-bound', 'with --num-epoch/--num-update-checkpoints: ignore checkpoints after this epoch/update'),
  maximize: boolFlag('--maximize', 'with --num-best-checkpoints: higher metric values are better (default: from the checkpoints\' training config)'),
  minimize: boolFlag('--minimize', 'with --num-best-checkpoints: lower metric values are better'),
};

/** The variadic --inputs flag (the option table's flag specs take one value each). */
export function configureAverageCommand(cmd: Command): void {
  cmd.option('--inputs <PATHS...>', 'checkpoint files, or directories holding them');
}

/** Checkpoint files: `given` as named, `listed` from directories (sorted by name). */
function expandInputs(inputs: readonly string[]): { given: string[]; listed: string[] } {
  const given: string[] = [];
  const listed: string[] = [];
  for (const p of inputs) {
    if (!existsSync(p)) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `--inputs: ${p} does not exist`);
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p).sort()) if (f.endsWith(CHECKPOINT_EXT) && !f.startsWith('.')) listed.push(join(p, f));
    } else {
      given.push(p);
    }
  }
  return { given, listed };
}

export async function runAverageCheckpoints(opts: AverageOptions): Promise<string[]> {
  const log = getLogger();
  if (opts.inputs.length === 0) throw new DifformerError('DIFFORMER_BAD_OPTION', '--inputs is required: checkpoint files or a directory of them');
  if (!opts.output) throw new DifformerError('DIFFORMER_BAD_OPTION', '--output is required (where to write the averaged checkpoint)');
  const modes = [
    ['best', opts.numBestCheckpoints, '--num-best-checkpoints'],
    ['epoch', opts.numEpochCheckpoints, '--num-epoch-checkpoints'],
    ['update', opts.numUpdateCheckpoints, '--num-update-checkpoints'],
  ] as const;
  for (const [, n, flag] of modes) if (n < 0) throw new DifformerError('DIFFORMER_BAD_OPTION', `${flag} must be positive, got ${n}`);
  const chosen = modes.filter(([, n]) => n > 0);
  if (chosen.length > 1) throw new DifformerError('DIFFORMER_BAD_OPTION', `give only one of ${chosen.map(([, , f]) => f).join(', ')}`);
  if (opts.maximize && opts.minimize) throw new DifformerError('DIFFORMER_BAD_OPTION', 'give --maximize or --minimize, not both');
  const mode = chosen[0];
  if (opts.checkpointUpperBound !== undefined && mode?.[0] !== 'epoch' && mode?.[0] !== 'update') {
    throw new DifformerError('DIFFORMER_BAD_OPTION', '--checkpoint-upper-bound needs --num-epoch-checkpoints or --num-update-checkpoints');
  }

  // 1. expand, 2. select
  const { given, listed } = expandInputs(opts.inputs);
  let files: string[];
  let description: string;
  if (!mode) {
    if (listed.length > 0 || given.length < opts.inputs.length) throw new DifformerError('DIFFORMER_BAD_OPTION', '--inputs names a directory: add --num-best-checkpoints, --num-epoch-checkpoints or --num-update-checkpoints, or list the files');
    files = given;
    description = `mean of ${files.length} given checkpoints`;
  } else {
    const [kind, n] = mode;
    // a directory holds every kind of checkpoint: keep the kind asked for (named files must match)
    const candidates = [...given, ...listed.filter((f) => parseCheckpointName(f)?.kind === kind)];
    const sel: Selection = { mode: kind, n, upperBound: opts.checkpointUpperBound };
    if (kind === 'best') {
      const named = candidates.filter((f) => parseCheckpointName(f)?.kind === 'best');
      const parsed = named.map((f) => parseCheckpointName(f));
      const metric = parsed[0]?.kind === 'best' ? parsed[0].metric : undefined;
      const flag = opts.maximize ? true : opts.minimize || opts.maximize === false ? false : undefined;
      const dir = metricDirection(metric ?? '', metric && flag === undefined ? readCheckpointMeta(named[named.length - 1]!) : undefined, flag);
      sel.maximize = dir.maximize;
      description = `${n} best by ${metric ?? '?'} (${dir.maximize ? 'higher' : 'lower'} is better, from the ${dir.source})`;
      log.info({ metric, maximize: dir.maximize, source: dir.source }, `best checkpoints by ${metric}: ${dir.maximize ? 'higher' : 'lower'} is better (from the ${dir.source})`);
    } else {
      description = `${n} newest ${kind} checkpoints${opts.checkpointUpperBound !== undefined ? ` at or below ${kind} ${opts.checkpointUpperBound}` : ''}`;
    }
    files = selectCheckpoints(candidates, sel);
  }
  if (files.length === 0) throw new DifformerError('DIFFORMER_FILE_NOT_FOUND', `no checkpoints (*${CHECKPOINT_EXT}) found in --inputs ${opts.inputs.join(' ')}`);
  // an input would lose its optimizer state (checkpoint_last could no longer resume training)
  const clobbered = files.find((f) => resolve(f) === resolve(opts.output!));
  if (clobbered) throw new DifformerError('DIFFORMER_BAD_OPTION', `--output ${opts.output} is one of the checkpoints being averaged: write the average to a new file`);
  if (basename(opts.output) === 'checkpoint_last.safetensors' && existsSync(opts.output)) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `--output ${opts.output} would replace the point training resumes from (an average has no optimizer state): write it to a new file`);
  }
  log.info({ inputs: files }, `averaging ${files.length} checkpoints: ${files.map((f) => basename(f)).join(', ')}`);

  // 3. average and write
  mkdirSync(dirname(resolve(opts.output)), { recursive: true });
  const bar = createProgress('average', files.length);
  const meta = averageCheckpointFiles(files, opts.output, description, (i) => bar.update(i));
  bar.stop();
  log.info({ output: opts.output, metadataFrom: meta.averaged.metadataFrom, numUpdates: meta.progress.numUpdates }, `wrote ${opts.output} (${description}; metadata from ${basename(meta.averaged.metadataFrom)})`);
  return files;
}
