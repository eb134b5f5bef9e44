import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nativeToolchainPresent } from '../src/model/native/toolchain.ts';
import { BUILT_ADDON, PROJECT_ROOT, copyProject } from './helpers/project-copy.ts';

const run = promisify(execFile);

type Line = Record<string, unknown> & { level?: number; msg?: string; event?: string };

/** A job that trains for a moment: enough to start the backend and log the job's first lines. */
async function tinyJob(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-backend-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const job = path.join(dir, 'job.yaml');
  await writeFile(job, [
    'name: backend-line',
    `data: { kind: shapes, dir: ${JSON.stringify(path.join(dir, 'shapes'))}, perClass: 8, size: 16 }`,
    'model: { layers: [ { type: flatten }, { type: dense, units: 8 } ] }',
    'train: { epochs: 1, batchSize: 8 }',
    `output: { dir: ${JSON.stringify(path.join(dir, 'out'))} }`,
  ].join('\n'));
  return job;
}

/** Runs `drover train` from a project folder and returns its JSON lines. */
async function train(project: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Line[]> {
  const { stdout } = await run(process.execPath, [path.join(project, 'bin', 'drover.js'), 'train', ...args], {
    cwd: project,
    env: { ...process.env, CI: 'true', DROVER_NATIVE: '', ...env },
    timeout: 180_000,
  });
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
}

const backendLine = (lines: Line[]): Line => lines.find((l) => l.event === 'backend')!;
const warnings = (lines: Line[]): string[] => lines.filter((l) => (l.level ?? 0) >= 40).map((l) => String(l.msg));

test('a normal run reports its backend in one calm line; what was tried is at debug level only', async (t) => {
  const lines = await train(PROJECT_ROOT, ['--config', await tinyJob(t)]);
  const backend = backendLine(lines);
  t.truthy(backend);
  t.false(lines.some((l) => (l.level ?? 0) >= 30 && JSON.stringify(l).includes('Cannot find package')), 'a module-resolution error shown at info level or above');
  if (backend.backend === 'wasm') {
    const kernels = existsSync(BUILT_ADDON) ? 'wasm + oneDNN kernels' : 'wasm without oneDNN kernels (optional, not built here)';
    // Where Dawn finds an adapter that auto passes over (a software one), the line says so too.
    const calm = `${kernels}; native TensorFlow not installed (optional)`;
    const reason = String(backend.reason);
    t.true(reason === calm || (reason.startsWith(`${calm}; webgpu: `) && !reason.slice(calm.length + 2).includes(';')), reason);
  }
  t.deepEqual(warnings(lines), []);
});

test('an addon missing where a compiler and oneDNN are installed is a loud warning at start; without them a calm note', async (t) => {
  const project = await copyProject(t);
  const lines = await train(project, ['--config', await tinyJob(t), '--backend', 'wasm']);
  const backend = backendLine(lines);
  if (nativeToolchainPresent()) {
    t.regex(String(backend.reason), /^wasm without oneDNN kernels \(missing or broken: see the warning\)/);
    const warning = warnings(lines).find((w) => w.includes('oneDNN kernels are missing'));
    t.truthy(warning, JSON.stringify(warnings(lines)));
    t.regex(warning!, /about 3x slower/);
    t.regex(warning!, /node native\/build\.mjs/);
  } else {
    t.regex(String(backend.reason), /^wasm without oneDNN kernels \(optional, not built here\)/);
    t.deepEqual(warnings(lines), []);
  }
});

test('an addon that fails to load is a loud warning at start', async (t) => {
  const project = await copyProject(t);
  const addon = path.join(project, 'native', 'build', 'Release', 'drover_onednn.node');
  await mkdir(path.dirname(addon), { recursive: true });
  await writeFile(addon, 'not a shared object');
  const lines = await train(project, ['--config', await tinyJob(t), '--backend', 'wasm']);
  const warning = warnings(lines).find((w) => w.includes('oneDNN kernels are missing'));
  t.truthy(warning, JSON.stringify(warnings(lines)));
  t.regex(warning!, /failed to load/);
});

test('--backend cpu trains only with a warning naming the faster backends, and the help says so', async (t) => {
  const lines = await train(PROJECT_ROOT, ['--config', await tinyJob(t), '--backend', 'cpu']);
  t.is(backendLine(lines).backend, 'cpu');
  const warning = warnings(lines).find((w) => w.includes('cpu backend'));
  t.truthy(warning);
  t.regex(warning!, /--backend wasm/);
  t.regex(warning!, /--backend tensorflow/);
  const { stdout } = await run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'drover.js'), 'train', '--help'], { timeout: 60_000 });
  t.regex(stdout.replace(/\s+/g, ' '), /cpu: pure JS, ~1 img\/s, checks only/);
});
