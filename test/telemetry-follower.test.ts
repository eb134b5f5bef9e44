import test from 'ava';
import type { ExecutionContext } from 'ava';
import { appendFile, mkdtemp, rename, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { followLog } from '../src/telemetry/log-follower.ts';
import type { FollowChunk } from '../src/telemetry/log-follower.ts';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-follow-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Pulls chunks from a follower one at a time, each wait bounded so a bug fails instead of hanging. */
function reader(path: string, t: ExecutionContext, options: { chunkBytes?: number } = {}) {
  const controller = new AbortController();
  const iterator = followLog(path, { signal: controller.signal, pollMs: 20, ...options })[Symbol.asyncIterator]();
  t.teardown(async () => {
    controller.abort();
    await iterator.return?.(undefined);
  });
  return {
    async next(): Promise<FollowChunk> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no chunk within 5 s')), 5000);
      });
      try {
        const result = await Promise.race([iterator.next(), timeout]);
        if (result.done) throw new Error('follower ended');
        return result.value;
      } finally {
        clearTimeout(timer);
      }
    },
    /** Lines until `count` have arrived, skipping nothing else silently. */
    async lines(count: number): Promise<string[]> {
      const lines: string[] = [];
      while (lines.length < count) {
        const chunk = await this.next();
        if (chunk.kind !== 'lines') throw new Error(`expected lines, got ${JSON.stringify(chunk)}`);
        lines.push(...chunk.lines);
      }
      return lines;
    },
    abort: () => controller.abort(),
    iterator,
  };
}

test('yields the lines already there, then lines as they are appended', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n{"a":2}\n');
  const r = reader(path, t);
  t.deepEqual(await r.lines(2), ['{"a":1}', '{"a":2}']);
  await appendFile(path, '{"a":3}\n');
  t.deepEqual(await r.lines(1), ['{"a":3}']);
});

test('waits for a file that does not exist yet', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'later.jsonl');
  const r = reader(path, t);
  t.deepEqual(await r.next(), { kind: 'missing' });
  await writeFile(path, '{"a":1}\n');
  t.deepEqual(await r.lines(1), ['{"a":1}']);
});

test('holds a partial last line until its newline arrives, bytes of a character included', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  const line = JSON.stringify({ msg: 'données — 数据', n: 1 });
  const bytes = Buffer.from(line + '\n');
  // Cut inside a multi-byte character: neither half may be decoded alone.
  const cut = bytes.indexOf(Buffer.from('数')) + 1;
  // A complete line first: once it is read, the partial one after it has been read too.
  await writeFile(path, Buffer.concat([Buffer.from('{"first":true}\n'), bytes.subarray(0, cut)]));
  const r = reader(path, t, { chunkBytes: 7 });
  t.deepEqual(await r.lines(1), ['{"first":true}']);
  await appendFile(path, bytes.subarray(cut));
  t.deepEqual(await r.lines(1), [line]);
});

test('a whole JSON object without its newline is used at once; the newline that follows adds nothing', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n{"a":2}');
  const r = reader(path, t);
  t.deepEqual(await r.lines(2), ['{"a":1}', '{"a":2}']);
  await appendFile(path, '\n{"a":3}\n');
  const next = await r.lines(1);
  t.deepEqual(next.filter((l) => l !== ''), ['{"a":3}']);
});

test('truncation resets and starts again from the top', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n{"a":2}\n');
  const r = reader(path, t);
  await r.lines(2);
  await truncate(path, 0);
  await appendFile(path, '{"b":1}\n');
  const chunk = await r.next();
  t.deepEqual(chunk, { kind: 'reset', reason: 'truncated' });
  t.deepEqual(await r.lines(1), ['{"b":1}']);
});

test('a file rewritten in place with as many bytes or more is noticed by its first bytes', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"job":"one"}\n');
  const r = reader(path, t);
  await r.lines(1);
  await writeFile(path, '{"job":"two"}\n{"job":"two","more":true}\n');
  t.deepEqual(await r.next(), { kind: 'reset', reason: 'truncated' });
  t.deepEqual(await r.lines(2), ['{"job":"two"}', '{"job":"two","more":true}']);
});

test('a replaced file (log rotation) resets and follows the new file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n');
  const r = reader(path, t);
  await r.lines(1);
  const next = join(dir, 'next.jsonl');
  await writeFile(next, '{"a":1}\n{"c":1}\n');
  await rename(next, path);
  t.deepEqual(await r.next(), { kind: 'reset', reason: 'replaced' });
  t.deepEqual(await r.lines(2), ['{"a":1}', '{"c":1}']);
});

test('a deleted file resets, then waits for it again', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n');
  const r = reader(path, t);
  await r.lines(1);
  await unlink(path);
  t.deepEqual(await r.next(), { kind: 'reset', reason: 'deleted' });
  t.deepEqual(await r.next(), { kind: 'missing' });
});

test('aborting ends the follower while it waits', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, '{"a":1}\n');
  const r = reader(path, t);
  await r.lines(1);
  const pending = r.iterator.next();
  r.abort();
  t.deepEqual(await pending, { done: true, value: undefined });
});

test('once: reads to the end of a finished log and stops', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.jsonl');
  await writeFile(path, Array.from({ length: 1000 }, (_, i) => JSON.stringify({ i })).join('\n') + '\n');
  const lines: string[] = [];
  for await (const chunk of followLog(path, { once: true, chunkBytes: 1000 })) {
    if (chunk.kind === 'lines') lines.push(...chunk.lines);
  }
  t.is(lines.length, 1000);
  t.is(lines[999], '{"i":999}');
});
