/**
 * A live trace's lines on a terminal: a person reads a few lines a second,
 * and a terminal that cannot keep up with a firehose would make the run wait
 * for it, so that the kernel loses events. So the trace never waits for a
 * terminal: past TTY_LINES_PER_SECOND, and whenever the terminal has not yet
 * taken what it was given (a slow terminal, a paused one), lines are folded:
 * counted, not printed, and a note in their place says how many. Every event
 * is still read (the summary counts it) and written to --output-file. Files
 * and pipes get every line, and make the run wait when they are slow.
 */

/** What a terminal is shown at most, per second (in tenths of a second: bursts of a few hundred lines pass). */
export const TTY_LINES_PER_SECOND = 5000;

const WINDOW_MS = 100;

export class FoldingLines {
  private windowStart = Number.NEGATIVE_INFINITY;
  private shown = 0;
  private pending = 0;
  /** Lines folded in all. */
  folded = 0;

  constructor(
    private readonly note: (text: string) => void,
    private readonly perSecond = TTY_LINES_PER_SECOND,
    private readonly now: () => number = Date.now,
    /** Whether the terminal is still busy with earlier lines: then the next ones are folded, not waited for. */
    private readonly behind: () => boolean = () => false,
  ) {}

  /** Whether the next line is shown; when not, it is counted as folded (and need not be made). */
  admit(): boolean {
    const t = this.now();
    if (t - this.windowStart >= WINDOW_MS) {
      this.end();
      this.windowStart = t;
      this.shown = 0;
    }
    if (this.shown < (this.perSecond * WINDOW_MS) / 1000 && !this.behind()) {
      this.shown++;
      return true;
    }
    this.pending++;
    this.folded++;
    return false;
  }

  /** Says how many lines were folded since the last note (at the end of a burst, and at the end). */
  end(): void {
    if (this.pending === 0) return;
    this.note(
      `… ${this.pending} lines folded (more than a terminal shows: every event is counted in the summary, and kept in --output-file)`,
    );
    this.pending = 0;
  }
}
