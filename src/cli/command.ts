// What a CLI subcommand is, how its arguments are parsed (node:util parseArgs, strict) and how
// its --help is written. Subcommands live in their own modules and are listed in cli.ts.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SimpleARError } from '../core/base/errors.ts';

/** Where a command writes; process.stdout/stderr in the CLI, buffers in tests. */
export interface CliIo {
  stdout: Output;
  stderr: Output;
  /** Aborted on Ctrl-C: long commands stop cleanly (and leave nothing half-written). */
  signal?: AbortSignal;
}

export interface Output {
  write(text: string): unknown;
  /** True for a terminal: progress redraws one line instead of printing many. */
  isTTY?: boolean;
  columns?: number;
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder in the help, e.g. "<dir|url>". */
  arg?: string;
  description: string;
  default?: string | boolean;
  required?: boolean;
  /** Allowed values of a string option. */
  choices?: readonly string[];
}

export type OptionValues = Record<string, string | boolean | undefined>;

/** A command's flags and help: what parseCommandArgs and helpText read (tools/bench/bench.ts too). */
export interface CommandSpec {
  /** One line after the command name in the usage, e.g. "--bundle <dir> --out <image.png>". */
  usage: string;
  /** Paragraph(s) shown by --help above the options. */
  description: string;
  options: Record<string, OptionSpec>;
  /** Extra text after the options (examples, notes). */
  epilog?: string;
}

export interface CommandModule extends CommandSpec {
  run(values: OptionValues, io: CliIo): Promise<void>;
}

/** A wrong invocation (unknown option, missing or bad value): exit code 2 with the usage hint. */
export class UsageError extends SimpleARError {
  constructor(message: string) {
    super('InvalidSettings', message);
    this.name = 'UsageError';
  }
}

/**
 * Parses `argv` for a command: strict options only, no positionals. Returns null if --help was
 * asked for (the caller prints helpText). Defaults are applied; required options and choices
 * are checked.
 */
export function parseCommandArgs(command: CommandSpec, argv: string[]): OptionValues | null {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(command.options)) options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}) };
  let values: OptionValues;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }) as { values: OptionValues });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, '.'));
  }
  if (values.help) return null;
  for (const [name, o] of Object.entries(command.options)) {
    if (values[name] === undefined && o.default !== undefined) values[name] = o.default;
    const v = values[name];
    if (v === undefined && o.required) throw new UsageError(`--${name} ${o.arg ?? '<value>'} is required`);
    if (typeof v === 'string' && o.choices && !o.choices.includes(v)) {
      throw new UsageError(`--${name} must be one of ${o.choices.join(', ')}, got "${v}"`);
    }
  }
  return values;
}

/** `invocation`: how the command is run, e.g. "simplear convert" (the usage line's start). */
export function helpText(invocation: string, command: CommandSpec): string {
  const rows = Object.entries(command.options).map(([opt, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${opt}${o.type === 'string' ? ` ${o.arg ?? '<value>'}` : ''}`;
    const notes = [
      o.required ? 'required' : '',
      o.default !== undefined && o.default !== false ? `default: ${o.default}` : '',
    ].filter(Boolean);
    return [flag, `${o.description}${notes.length ? ` (${notes.join('; ')})` : ''}`];
  });
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([f]) => f!.length));
  const lines = [
    `usage: ${invocation} ${command.usage}`,
    '',
    command.description,
    '',
    'options:',
    ...rows.map(([f, d]) => `  ${f!.padEnd(width)}  ${d}`),
  ];
  if (command.epilog) lines.push('', command.epilog);
  return `${lines.join('\n')}\n`;
}

/** `dir` → absolute path; URLs unchanged (for readers and for the provenance in manifests). */
export function resolveLocation(location: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location) ? location : resolve(location);
}
