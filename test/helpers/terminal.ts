import { PassThrough } from 'node:stream';

/** A fake TTY: a PassThrough with isTTY and columns, recording everything written to it. */
export class FakeTty extends PassThrough {
  readonly isTTY = true;
  output = '';

  constructor(readonly columns = 100) {
    super();
    this.on('data', (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    });
  }

  /** What a terminal would show once everything written so far is drawn. */
  screen(): string[] {
    return renderTerminal(this.output);
  }
}

/**
 * Replays terminal output the way a terminal draws it: `\r` returns to column 0 and later
 * characters overwrite, `ESC[K` clears to the end of the line, `\n` starts a new line.
 */
export function renderTerminal(text: string): string[] {
  const lines: string[] = [''];
  let column = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\n') {
      lines.push('');
      column = 0;
    } else if (ch === '\r') {
      column = 0;
    } else if (ch === '\x1b' && text.startsWith('[K', i + 1)) {
      lines[lines.length - 1] = lines[lines.length - 1]!.slice(0, column);
      i += 2;
    } else {
      const line = lines[lines.length - 1]!.padEnd(column);
      lines[lines.length - 1] = line.slice(0, column) + ch + line.slice(column + 1);
      column++;
    }
  }
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Every state of the bar line: the text between carriage returns, as drawn. */
export function frames(text: string): string[] {
  return text
    .split('\r')
    .map((f) => f.replace(/\x1b\[K/g, '').split('\n')[0]!)
    .filter((f) => f !== '');
}
