// `npm run bench`: the one entry point of the benchmarks of docs/testing.md#performance-model (bench.ts
// says which module measures what; `npm run bench -- --help` lists the flags). `npm run
// bench:full` (full.ts) is the separate full-size run, figure by figure beside its target.
import { runBench } from './bench.ts';

process.exitCode = await runBench(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
