import { parseArgs } from 'node:util';
import { DarkroomClient, DarkroomError } from '@darkroom/client';
import pkg from '../package.json' with { type: 'json' };
import { cancel } from './commands/cancel.ts';
import { jobs } from './commands/jobs.ts';
import { pipelines } from './commands/pipelines.ts';
import { queue } from './commands/queue.ts';
import { retry } from './commands/retry.ts';
import { status } from './commands/status.ts';
import { submit } from './commands/submit.ts';
import type { Command, Options, Values } from './context.ts';
import { describeFailure } from './errors.ts';
import { EXIT, type Io, UsageError } from './io.ts';

/*
 * `darkroom [global options] <command> [options]`: finds the command, parses its flags with
 * node's own parseArgs (strict: an unknown flag is a usage error, exit 2), builds the client from
 * flags or the environment, runs the command and turns any error into a message and exit code.
 */

const COMMANDS: Command[] = [submit, status, jobs, cancel, retry, queue, pipelines];
const DEFAULT_URL = 'http://127.0.0.1:8080';

const GLOBAL: Options = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
};
const GLOBAL_WITH_VALUE = new Set(['--url', '--key']);

const GLOBAL_HELP = `global options:
  --url <url>      the API (default: DARKROOM_URL, else ${DEFAULT_URL})
  --key <key>      the station's key (default: DARKROOM_API_KEY)
  --json           print the API's JSON body on stdout, for scripts
  -q, --quiet      no progress display
  -h, --help       help (also: darkroom <command> --help)`;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `darkroom ${pkg.version}: submit images to Darkroom and follow their jobs

usage: darkroom <command> [options]

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

${GLOBAL_HELP}

exit codes: 0 ok, 1 the job failed or was cancelled, 2 usage error, 3 API, network or file error,
            124 --timeout passed, 130 interrupted (the job goes on)

example:
  darkroom submit photo.jpg --op resize:width=512 --op format:type=webp --wait -o out.webp
`;
}

/** The command name and the other arguments (global flags may come before the command). */
function splitCommand(argv: string[]): { name: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (!a.startsWith('-')) return { name: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
    if (GLOBAL_WITH_VALUE.has(a)) i++;
  }
  return { name: undefined, rest: argv };
}

function parse(command: Command | undefined, rest: string[]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...GLOBAL, ...command?.options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''), command?.name);
  }
}

/** Runs the CLI; resolves with the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  const { name, rest } = splitCommand(argv);
  const command = COMMANDS.find((c) => c.name === name);
  let values: Values = {};
  let url = io.env.DARKROOM_URL || DEFAULT_URL;
  let key = io.env.DARKROOM_API_KEY || undefined;
  try {
    if (name !== undefined && !command) throw new UsageError(`unknown command "${name}"`);
    const parsed = parse(command, rest);
    values = parsed.values;
    if (values.version) {
      io.stdout.write(`${pkg.version}\n`);
      return EXIT.ok;
    }
    if (!command && !values.help) {
      io.stderr.write(mainHelp());
      return EXIT.usage;
    }
    if (!command || values.help) {
      io.stdout.write(command ? `${command.help}\n\n${GLOBAL_HELP}\n` : mainHelp());
      return EXIT.ok;
    }
    url = (values.url as string | undefined) ?? url;
    key = (values.key as string | undefined) ?? key;
    const quiet = values.quiet === true;
    const client = new DarkroomClient({
      baseUrl: url,
      apiKey: key ?? '',
      userAgent: `darkroom-cli/${pkg.version} node/${process.versions.node}`,
      onRetry: (e) => {
        if (quiet) return;
        const why = e.error instanceof DarkroomError ? `${e.error.status} ${e.error.code}` : e.error.reason;
        io.stderr.write(`${why}; trying again in ${(e.delayMs / 1000).toFixed(1)} s\n`);
      },
    });
    return await command.run({ io, client, json: values.json === true, quiet }, parsed.positionals, values);
  } catch (err) {
    if (io.signal.aborted) {
      io.stderr.write('darkroom: interrupted\n');
      return EXIT.interrupted;
    }
    const failure = describeFailure(err, { url, keyGiven: key !== undefined });
    if (values.json && failure.exitCode !== EXIT.usage) io.stdout.write(`${JSON.stringify(failure.json, null, 2)}\n`);
    io.stderr.write(failure.message.map((l, i) => (i === 0 ? `darkroom: ${l}` : `  ${l}`)).join('\n'));
    io.stderr.write('\n');
    if (err instanceof UsageError) io.stderr.write(`run darkroom ${err.command ? `${err.command} ` : ''}--help for usage\n`);
    return failure.exitCode;
  }
}
