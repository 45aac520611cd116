/**
 * The progress of a long command on stderr. On a terminal, one line redrawn in place at most every
 * 100 ms and erased at the end. Elsewhere (a log file, CI) only when asked for with --progress:
 * plain lines, at most one a second. A forced update (a phase change, the last count) always shows.
 */
export class ProgressLine {
  #last = 0;
  #shown = false;

  private constructor(
    private readonly tty: boolean,
    private readonly out: NodeJS.WriteStream,
  ) {}

  /** From a command's --progress / --no-progress flag (undefined: on a terminal only). */
  static fromFlag(flag: boolean | undefined, out: NodeJS.WriteStream = process.stderr): ProgressLine | undefined {
    if (flag === false) return undefined;
    if (out.isTTY) return new ProgressLine(true, out);
    return flag === true ? new ProgressLine(false, out) : undefined;
  }

  show(text: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.#last < (this.tty ? 100 : 1000)) return;
    this.#last = now;
    this.#shown = true;
    this.out.write(this.tty ? `\r\x1b[K${text}` : `${text}\n`);
  }

  /** Erase the line on a terminal; plain lines stay. */
  clear(): void {
    if (this.tty && this.#shown) this.out.write('\r\x1b[K');
    this.#shown = false;
  }
}
