import { run } from './cli.ts';

/*
 * The `darkroom` process. The first Ctrl-C stops a wait (the job goes on on the server) and the
 * command exits 130 after saying how to follow the job; a second one exits at once.
 */

const interrupt = new AbortController();
process.once('SIGINT', () => {
  interrupt.abort(new Error('interrupted'));
  process.once('SIGINT', () => process.exit(130));
});

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: interrupt.signal,
});
