/**
 * Subcommand wiring: turns each subcommand's option table into commander options and calls its
 * runner with resolved options. Runners live in one file per subcommand and know nothing of
 * commander.
 */
import { Command } from 'commander';
import { createLogger, setLogger } from '../log.js';
import { preprocessDefaults, preprocessOptionTable, runPreprocess } from './preprocess.js';
import { buildGenerateCommand } from './generate.js';
import { buildTrainCommand } from './train.js';
import { scoreDefaults, scoreOptionTable, runScore } from './score.js';
import { averageDefaults, averageOptionTable, configureAverageCommand, runAverageCheckpoints } from './average_checkpoints.js';
import { buildDistillCommand } from './distill.js';
import { addOptions, commonDefaults, commonOptionTable, readOptions, resolveOptions, type OptionTable } from '../options.js';

export interface SubcommandSpec {
  readonly name: string;
  /** argv lets two-pass commands (train, generate) add the chosen components' flags. */
  build(argv: string[]): Command | Promise<Command>;
}

interface BasicOptions {
  logFormat: 'simple' | 'json' | 'none';
  debug: boolean;
}

const basicDefaults: BasicOptions = { logFormat: commonDefaults.logFormat, debug: commonDefaults.debug };
// the common table's flags (src/options.ts), for subcommands that take no other common option
const basicTable: OptionTable<BasicOptions> = { logFormat: commonOptionTable.logFormat, debug: commonOptionTable.debug };

function setupLogging(parsed: Record<string, unknown>): BasicOptions {
  const basic = resolveOptions(basicDefaults, readOptions(basicTable, parsed));
  setLogger(createLogger(basic.logFormat));
  return basic;
}

/** A subcommand whose options are one table with defaults, and a runner. */
function simpleCommand<O extends object>(
  name: string,
  description: string,
  table: OptionTable<O>,
  defaults: Readonly<O>,
  run: (opts: O, cmd: Command) => Promise<void>,
  configure?: (cmd: Command) => void,
): SubcommandSpec {
  return {
    name,
    build() {
      const cmd = new Command(name).description(description);
      configure?.(cmd);
      addOptions(cmd, table, defaults);
      addOptions(cmd, basicTable, basicDefaults);
      cmd.action(async (...args: unknown[]) => {
        const self = args[args.length - 1] as Command;
        const parsed = self.opts();
        setupLogging(parsed);
        await run(resolveOptions(defaults, readOptions(table, parsed)), self);
      });
      return cmd;
    },
  };
}

export const commands: SubcommandSpec[] = [
  simpleCommand(
    'preprocess',
    'binarize parallel text into a data-bin (dictionaries, SentencePiece, .bin/.idx)',
    preprocessOptionTable,
    preprocessDefaults,
    async (opts) => {
      await runPreprocess(opts);
    },
  ),
  simpleCommand(
    'score',
    'score a system output against references: BLEU (fairseq or sacreBLEU) or ROUGE',
    scoreOptionTable,
    scoreDefaults,
    async (opts) => {
      await runScore(opts);
    },
  ),
  twoPass('train', buildTrainCommand),
  twoPass('generate', buildGenerateCommand),
  // workflow commands: distillation and checkpoint averaging
  twoPass('distill', buildDistillCommand),
  simpleCommand(
    'average-checkpoints',
    'average the model weights of the N best or newest checkpoints (fairseq scripts/average_checkpoints.py)',
    averageOptionTable,
    averageDefaults,
    async (opts, cmd) => {
      await runAverageCheckpoints({ ...opts, inputs: (cmd.opts().inputs as string[] | undefined) ?? [] });
    },
    configureAverageCommand,
  ),
];

/** Commands whose flags depend on argv (the chosen task/arch/criterion or checkpoint). */
function twoPass(name: string, build: (argv: string[]) => Promise<Command>): SubcommandSpec {
  return {
    name,
    async build(argv) {
      const cmd = await build(argv);
      addOptions(cmd, basicTable, basicDefaults);
      cmd.hook('preAction', (self) => {
        setupLogging(self.opts());
      });
      return cmd;
    },
  };
}
