/**
 * The few ANSI colours the views use. Colour is for people at a terminal: off
 * when the stream is not a TTY, when NO_COLOR is set (https://no-color.org),
 * or with --no-color.
 */

export function shouldColor(stream: NodeJS.WritableStream, noColorFlag = false): boolean {
  if (noColorFlag) return false;
  const env = process.env.NO_COLOR;
  if (env !== undefined && env !== '') return false;
  return Boolean((stream as NodeJS.WriteStream).isTTY);
}

export type Style = 'bold' | 'dim' | 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'inverse';

const CODES: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
  inverse: [7, 27],
};

export class Painter {
  constructor(readonly enabled: boolean) {}

  paint(text: string, ...styles: Style[]): string {
    if (!this.enabled || text === '') return text;
    let open = '';
    let close = '';
    for (const s of styles) {
      open += `\u001b[${CODES[s][0]}m`;
      close = `\u001b[${CODES[s][1]}m${close}`;
    }
    return `${open}${text}${close}`;
  }

  /** A stable colour per packet, so that interleaved packets can be told apart. */
  packet(id: number, text: string): string {
    if (!this.enabled) return text;
    const palette = [36, 35, 33, 32, 34, 96, 95, 93, 92, 94];
    const code = palette[(id - 1) % palette.length];
    return `\u001b[${code}m${text}\u001b[39m`;
  }
}

/** Visible length of a string that may hold ANSI codes. */
export function visibleLength(s: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escapes is the point
  return s.replace(/\u001b\[[0-9;]*m/g, '').length;
}

export function padEndVisible(s: string, width: number): string {
  const n = visibleLength(s);
  return n >= width ? s : s + ' '.repeat(width - n);
}
