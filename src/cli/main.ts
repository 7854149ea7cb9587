// Entry point of the Node CLI (`npm run cli -- <command> …`, i.e. `tsx src/cli/main.ts`).
import { runCli } from './cli.ts';

const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  // First Ctrl-C: stop cleanly (commands abort their work and remove partial output).
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('\ninterrupted: stopping… (Ctrl-C again to quit at once)\n');
  controller.abort(new Error('interrupted'));
});

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
