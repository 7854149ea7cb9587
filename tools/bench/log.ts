// Progress lines of `npm run bench` go to stderr: stdout holds only the table and the JSON report.
export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}
