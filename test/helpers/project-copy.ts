import type { ExecutionContext } from 'ava';
import { cp, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository this test runs from. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The addon as native/build.mjs leaves it in the repository (absent where it was not built). */
export const BUILT_ADDON = path.join(PROJECT_ROOT, 'native', 'build', 'Release', 'drover_onednn.node');

/**
 * A copy of drover (sources, CLI, contract, native sources; node_modules linked, not copied)
 * without a native build, removed when the test ends: a fresh checkout whose install step did
 * not run or was stopped. Tests change its native/ folder without touching the real one.
 */
export async function copyProject(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-project-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const entry of ['src', 'bin', 'proto', 'package.json', 'tsconfig.json']) {
    await cp(path.join(PROJECT_ROOT, entry), path.join(dir, entry), { recursive: true });
  }
  await copyNativeSources(path.join(dir, 'native'));
  await symlink(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/** native/'s sources and build script (no build) into `dir`. */
export async function copyNativeSources(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const entry of ['binding.gyp', 'src', 'build.mjs']) {
    await cp(path.join(PROJECT_ROOT, 'native', entry), path.join(dir, entry), { recursive: true });
  }
}
