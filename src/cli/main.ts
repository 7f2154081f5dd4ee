/**
 * The `difformer` program: one commander program with a subcommand per file in src/cli/.
 * `difformer <cmd>` and the `difformer-<cmd>` bins run the same code. Errors a user can cause
 * are DifformerErrors: printed as one line on stderr with a non-zero exit, the stack only with
 * --debug. Heavy modules (TensorFlow.js) are imported inside actions so --help is instant.
 */
import { Command, CommanderError } from 'commander';
import { isDifformerError } from '../errors.js';
import { commands } from './commands.js';

export const VERSION = '0.1.0';

export async function buildProgram(prog = 'difformer', argv: string[] = []): Promise<Command> {
  const program = new Command(prog)
    .description('diffusion-based text generation toolkit (Difformer, Diff-LM, CMLM, Transformer), modelled on fairseq')
    .version(VERSION)
    .showHelpAfterError(false);
  for (const c of commands) program.addCommand(await c.build(argv));
  return program;
}

function report(prog: string, e: unknown, debug: boolean): number {
  if (e instanceof CommanderError) {
    // commander already printed help/version or its own message
    return e.exitCode;
  }
  if (isDifformerError(e)) {
    process.stderr.write(`${prog}: error: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
  const err = e as Error;
  if (/^Aborted\(\)/.test(err?.message ?? '') && String(err?.stack ?? '').includes('tfjs-backend-wasm')) {
    // tfjs-wasm aborts when its heap (capped at 4 GB, never shrinking) cannot grow
    process.stderr.write(
      `${prog}: error: the WebAssembly heap ran out of memory (4 GB limit); lower --max-tokens or --batch-size (raise --update-freq to keep the effective batch)\n`,
    );
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
  process.stderr.write(`${prog}: internal error: ${err?.message ?? String(e)}\n`);
  if (debug && err?.stack) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('(run again with --debug for the stack trace)\n');
  return 70;
}

/**
 * Runs the program on argv (without node and script). `sub` fixes the subcommand for the
 * `difformer-<cmd>` bins. Resolves to the exit code; never throws.
 */
export async function main(argv: string[], sub?: string): Promise<number> {
  const prog = sub ? `difformer-${sub}` : 'difformer';
  const debug = argv.includes('--debug');
  try {
    const program = await buildProgram(prog, argv);
    program.exitOverride();
    for (const c of program.commands) c.exitOverride();
    if (sub) {
      const cmd = program.commands.find((c) => c.name() === sub);
      if (!cmd) throw new Error(`no subcommand ${sub}`);
      cmd.name(prog);
      cmd.parent = null; // a difformer-<cmd> bin is a program of its own: "Usage: difformer-<cmd> ..."
      await cmd.parseAsync(argv, { from: 'user' });
    } else {
      await program.parseAsync(argv, { from: 'user' });
    }
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return report(prog, e, debug);
  }
}
