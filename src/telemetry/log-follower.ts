import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** What following a log yields. */
export type FollowChunk =
  /** Complete lines, in order, without their newlines. */
  | { kind: 'lines'; lines: string[] }
  /** The file was truncated or replaced: what came before no longer describes it. */
  | { kind: 'reset'; reason: 'truncated' | 'replaced' | 'deleted' }
  /** The file does not exist (yet); following goes on until it does. */
  | { kind: 'missing' };

export interface FollowOptions {
  /** Stops following; the generator then returns. */
  signal?: AbortSignal;
  /** How often to look for appended bytes. Default 200 ms. */
  pollMs?: number;
  /** Stop at the end of the file instead of waiting for more (a finished log). Default false. */
  once?: boolean;
  /** Bytes read per chunk, bounding memory on a big log. Default 1 MiB. */
  chunkBytes?: number;
}

/** Bytes at the start of the file remembered to notice a file rewritten in place. */
const HEAD_BYTES = 256;

/**
 * Follows a growing JSON-lines log as `tail -F` does: yields the lines already there, then
 * lines as they are appended. A partial last line is held until its newline arrives (or,
 * when it is a complete JSON object already, yielded at once). Truncation, replacement
 * (another inode) and rewriting in place (different first bytes) yield a `reset` and start
 * over from the top. Polls, because file-change notifications are unreliable across file
 * systems (NFS, bind mounts) and a poll of a stat is cheap.
 */
export async function* followLog(path: string, options: FollowOptions = {}): AsyncGenerator<FollowChunk> {
  const pollMs = options.pollMs ?? 200;
  const chunkBytes = options.chunkBytes ?? 1 << 20;
  const signal = options.signal;
  let handle: FileHandle | undefined;
  let inode = -1;
  let offset = 0;
  let head: Buffer = Buffer.alloc(0);
  let remainder: Buffer = Buffer.alloc(0);
  let reportedMissing = false;
  let lastSize = -1;
  let lastMtime = -1;

  const startOver = async (): Promise<void> => {
    await handle?.close();
    handle = undefined;
    offset = 0;
    head = Buffer.alloc(0);
    remainder = Buffer.alloc(0);
    lastSize = -1;
    lastMtime = -1;
  };

  const wait = async (): Promise<boolean> => {
    if (options.once) return false;
    try {
      await sleep(pollMs, undefined, signal ? { signal } : {});
      return true;
    } catch {
      return false;
    }
  };

  try {
    while (!signal?.aborted) {
      let info;
      try {
        info = await stat(path, { bigint: false });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        if (handle) {
          await startOver();
          yield { kind: 'reset', reason: 'deleted' };
        }
        if (!reportedMissing) {
          reportedMissing = true;
          yield { kind: 'missing' };
        }
        if (!(await wait())) return;
        continue;
      }
      reportedMissing = false;

      if (handle && info.ino !== inode) {
        await startOver();
        yield { kind: 'reset', reason: 'replaced' };
      }
      if (!handle) {
        handle = await open(path, 'r');
        inode = info.ino;
      }
      if (info.size < offset) {
        await startOver();
        handle = await open(path, 'r');
        inode = info.ino;
        yield { kind: 'reset', reason: 'truncated' };
      } else if (head.length > 0 && (info.size !== lastSize || info.mtimeMs !== lastMtime)) {
        const now = Buffer.alloc(head.length);
        const { bytesRead } = await handle.read(now, 0, head.length, 0);
        if (bytesRead < head.length || !now.equals(head)) {
          await startOver();
          handle = await open(path, 'r');
          inode = info.ino;
          yield { kind: 'reset', reason: 'truncated' };
        }
      }
      lastSize = info.size;
      lastMtime = info.mtimeMs;

      if (info.size <= offset) {
        if (!(await wait())) return;
        continue;
      }
      while (offset < info.size && !signal?.aborted) {
        const length = Math.min(chunkBytes, info.size - offset);
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        if (bytesRead === 0) break;
        if (offset < HEAD_BYTES) {
          head = Buffer.concat([head, buffer.subarray(0, Math.min(bytesRead, HEAD_BYTES - offset))]);
        }
        offset += bytesRead;
        const lines = splitLines(Buffer.concat([remainder, buffer.subarray(0, bytesRead)]));
        remainder = lines.rest;
        if (offset >= info.size && remainder.length > 0 && isCompleteObject(remainder)) {
          lines.lines.push(remainder.toString('utf8'));
          remainder = Buffer.alloc(0);
        }
        if (lines.lines.length > 0) yield { kind: 'lines', lines: lines.lines };
      }
    }
  } finally {
    await handle?.close();
  }
}

/** Splits on '\n' in bytes, so a multi-byte character cut by a read is never decoded in halves. */
function splitLines(bytes: Buffer): { lines: string[]; rest: Buffer } {
  const lines: string[] = [];
  let start = 0;
  for (let i = bytes.indexOf(10, start); i !== -1; i = bytes.indexOf(10, start)) {
    const end = i > start && bytes[i - 1] === 13 ? i - 1 : i;
    lines.push(bytes.toString('utf8', start, end));
    start = i + 1;
  }
  return { lines, rest: Buffer.from(bytes.subarray(start)) };
}

/**
 * A trailing line without its newline that is a whole JSON object cannot grow into another
 * valid line, so it can be used now (a writer that died before its newline).
 */
function isCompleteObject(bytes: Buffer): boolean {
  const text = bytes.toString('utf8').trim();
  if (!text.startsWith('{') || !text.endsWith('}')) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
