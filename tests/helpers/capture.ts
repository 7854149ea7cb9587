// A writable that keeps what is written: the CLI's stdout/stderr in in-process tests.
export class Capture {
  text = '';
  isTTY = false;
  columns?: number;
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}
