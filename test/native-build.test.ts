import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nativeToolchainPresent } from '../src/model/native/toolchain.ts';
import { BUILT_ADDON, copyNativeSources } from './helpers/project-copy.ts';

const run = promisify(execFile);

// Builds a real addon (tens of seconds): only where the toolchain is, as on CI.
const withToolchain = nativeToolchainPresent() && existsSync(BUILT_ADDON) ? test : test.skip;

withToolchain('the native build never leaves a half-built addon and does not redo an up-to-date one', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-native-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await copyNativeSources(dir);
  const addon = path.join(dir, 'build', 'Release', 'drover_onednn.node');
  await mkdir(path.dirname(addon), { recursive: true });
  await copyFile(BUILT_ADDON, addon);
  const previous = await readFile(addon);
  const env = { ...process.env, DROVER_NATIVE: '' };

  // 1. A build stopped part-way (kill -9 of its whole process group, compiler included).
  const child = spawn(process.execPath, [path.join(dir, 'build.mjs')], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = once(child, 'exit');
  const building = await new Promise<boolean>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (out.includes('building the native oneDNN kernels in')) resolve(true);
    });
    child.once('exit', () => resolve(false));
  });
  if (!building) {
    // A Node without npm beside it (a bare binary: CI's Node 22 / 24 runs) has no node-gyp:
    // the build must then stop cleanly and leave the addon it has alone.
    await exited;
    t.regex(out, /not built: node-gyp not found/);
    t.is(child.exitCode, 0);
    t.deepEqual(await readFile(addon), previous);
    return;
  }
  process.kill(-child.pid!, 'SIGKILL');
  await exited;
  t.deepEqual(await readFile(addon), previous, 'the addon in place changed');
  t.deepEqual((await readdir(path.dirname(addon))).sort(), ['drover_onednn.node']);

  // 2. The next build cleans the stopped one's staging folder and replaces the addon whole.
  const built = await run(process.execPath, [path.join(dir, 'build.mjs')], { cwd: dir, env, timeout: 300_000 });
  t.regex(built.stdout, /native oneDNN kernels built/);
  t.deepEqual((await readdir(dir)).filter((name) => name.startsWith('.staging-')), []);
  t.true(existsSync(path.join(dir, 'build', 'stamp.json')));
  const first = await stat(addon);

  // 3. What `npx drover` (npm installing the folder) reruns: nothing to do, nothing touched.
  const again = await run(process.execPath, [path.join(dir, 'build.mjs')], { cwd: dir, env, timeout: 60_000 });
  t.regex(again.stdout, /up to date/);
  const second = await stat(addon);
  t.is(second.ino, first.ino);
  t.is(second.mtimeMs, first.mtimeMs);
});

test('without a compiler the native build says why, records it and succeeds', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-native-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await copyNativeSources(dir);
  const result = await run(process.execPath, [path.join(dir, 'build.mjs')], { cwd: dir, env: { ...process.env, DROVER_NATIVE: '', CXX: path.join(dir, 'no-such-compiler') }, timeout: 60_000 });
  t.regex(result.stdout, /not built: no C\+\+ compiler/);
  t.regex(await readFile(path.join(dir, 'build', 'skipped.txt'), 'utf8'), /no C\+\+ compiler/);
  t.false(existsSync(path.join(dir, 'build', 'Release', 'drover_onednn.node')));
});
