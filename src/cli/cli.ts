// The CLI dispatcher: `simplear <command> [options]`. Each command is one line in COMMANDS,
// loaded only when it runs. Exit codes: 0 done, 2 bad input (usage, or a typed error about the
// files or settings given), 1 any other failure, 130 cancelled.
import { SimpleARError, type ErrorCode } from '../core/base/errors.ts';
import { helpText, parseCommandArgs, UsageError, type CliIo, type CommandModule } from './command.ts';

interface CommandEntry {
  summary: string;
  load: () => Promise<{ default: CommandModule }>;
}

export const COMMANDS: Record<string, CommandEntry> = {
  convert: { summary: 'convert the original checkpoints into a model bundle', load: () => import('./convert.ts') },
  decode: { summary: 'decode a grid of visual tokens to a PNG with a bundle', load: () => import('./decode.ts') },
  generate: { summary: 'generate an image from a prompt with a bundle (CPU)', load: () => import('./generate.ts') },
};

/** Former commands, and where they went (the CLI ships only what the app's users run). */
const MOVED: Record<string, string> = {
  bench: 'the benchmarks are not part of the CLI: run `npm run bench -- [options]` (tools/bench/main.ts; --help for the options)',
};

/** Typed errors about what the user gave us (files, settings): exit code 2. */
const BAD_INPUT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'InvalidSettings',
  'ModelFileInvalid',
  'ModelFileMissing',
  'UnsupportedDType',
  'ModelMismatch',
  'BundleInvalid',
  'PromptTooLong',
]);

export function exitCodeFor(e: unknown): number {
  if (e instanceof SimpleARError) {
    if (e.code === 'Aborted') return 130;
    return BAD_INPUT.has(e.code) ? 2 : 1;
  }
  return 1;
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    'usage: simplear <command> [options]      (npm run cli -- <command> [options])',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'simplear <command> --help' for a command's options.",
    '',
  ].join('\n');
}

/** Runs one CLI invocation; returns the exit code. Never throws. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(mainHelp());
    return name === undefined ? 2 : 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    const moved = Object.hasOwn(MOVED, name) ? `: ${MOVED[name]}` : '';
    io.stderr.write(`simplear: unknown command "${name}"${moved}\n\n${mainHelp()}`);
    return 2;
  }
  const command = (await entry.load()).default;
  try {
    const values = parseCommandArgs(command, rest);
    if (values === null) {
      io.stdout.write(helpText(`simplear ${name}`, command));
      return 0;
    }
    await command.run(values, io);
    return 0;
  } catch (e) {
    io.stderr.write(describeError(name, e));
    if (e instanceof UsageError) io.stderr.write(`usage: simplear ${name} ${command.usage}\n(see simplear ${name} --help)\n`);
    return exitCodeFor(e);
  }
}

function describeError(command: string, e: unknown): string {
  if (e instanceof SimpleARError) {
    const code = e instanceof UsageError ? '' : ` [${e.code}]`;
    return `simplear ${command}: error${code}: ${e.message}\n`;
  }
  // Not a typed error: a bug or an environment problem; the stack helps whoever reports it.
  const err = e instanceof Error ? e : new Error(String(e));
  return `simplear ${command}: unexpected error: ${err.stack ?? err.message}\n`;
}
