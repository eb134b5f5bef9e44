import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { deviceSelectEnv, deviceSelectLayerDir } from '../src/model/vulkan-device-select.ts';
import { needsDeviceSelectLayer, type GpuAdapterEntry } from '../src/model/webgpu.ts';
import { REPO_ROOT, spawnDrover, tempDir } from './helpers/cluster.ts';
import { writeGpuTrainingJob } from './helpers/webgpu.ts';

const execFileAsync = promisify(execFile);

// Identically named GPUs (8x "NVIDIA H200"), here without a GPU: the Vulkan loader is given
// lavapipe twice (its ICD manifest and a second one naming a copy of its library), so Dawn sees
// two adapters with one name, as on a multi-GPU host. Each process bound with --gpu N must see
// exactly one of them, through drover's Vulkan layer. Skipped, with the reason, where there is
// no lavapipe or no C compiler.

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

/** VK_DRIVER_FILES naming lavapipe twice, or why that cannot be set up here. */
async function twinLavapipe(dir: string): Promise<string> {
  const manifest = ICD_DIRS.map((d) => path.join(d, 'lvp_icd.json')).find((f) => existsSync(f)) ??
    ICD_DIRS.map((d) => path.join(d, 'lvp_icd.x86_64.json')).find((f) => existsSync(f));
  if (!manifest) throw new Error('no lavapipe ICD manifest (mesa-vulkan-drivers)');
  const icd = JSON.parse(await readFile(manifest, 'utf8')) as { ICD: { library_path: string } };
  let library = icd.ICD.library_path;
  if (!path.isAbsolute(library)) {
    const listing = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
    library = listing.split('\n').find((l) => l.trim().startsWith(`${library} `))?.split(' => ')[1]?.trim() ?? '';
    if (!library) throw new Error(`ldconfig does not know ${icd.ICD.library_path}`);
  }
  const copy = path.join(dir, 'libvulkan_lvp_twin.so');
  await copyFile(library, copy);
  const twin = path.join(dir, 'lvp_twin_icd.json');
  await writeFile(twin, JSON.stringify({ ...icd, ICD: { ...icd.ICD, library_path: copy } }));
  return `${manifest}:${twin}`;
}

async function setUp(): Promise<{ dir: string; env: Record<string, string>; adapters: GpuAdapterEntry[] } | string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-gpu-twins-'));
  try {
    const env = { VK_DRIVER_FILES: await twinLavapipe(dir) };
    const { stdout } = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'bin', 'drover.js'), 'gpus', '--json'], { env: { ...process.env, ...env }, timeout: 60_000 });
    const adapters = JSON.parse(stdout) as GpuAdapterEntry[];
    if (adapters.length !== 2) throw new Error(`Dawn sees ${adapters.length} adapters with lavapipe given twice, not 2`);
    await deviceSelectLayerDir();
    return { dir, env, adapters };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    return (err as Error).message.split('\n')[0]!;
  }
}

const setup = await setUp();
const twins = typeof setup === 'string' ? test.serial.skip : test.serial;
if (typeof setup === 'string') console.log(`gpu-twins: skipped: ${setup}`);
const ready = setup as Exclude<typeof setup, string>;
if (typeof setup !== 'string') test.after.always(() => rm(ready.dir, { recursive: true, force: true }));

async function bindInChild(gpu: number, env: Record<string, string> = ready.env): Promise<Record<string, any>> {
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'helpers', 'webgpu-bind.ts'), String(gpu)], {
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, any>;
}

test('needsDeviceSelectLayer: a unique name is enough for dawn.node; twins and name prefixes are not', (t) => {
  const entry = (index: number, name: string): GpuAdapterEntry => ({ index, backend: 'vulkan', name, software: false });
  const h200s = [entry(0, 'NVIDIA H200'), entry(1, 'NVIDIA H200')];
  t.true(needsDeviceSelectLayer(h200s[0]!, h200s));
  t.true(needsDeviceSelectLayer(h200s[1]!, h200s));
  const mixed = [entry(0, 'NVIDIA H200 NVL'), entry(1, 'NVIDIA H200'), entry(2, 'AMD Radeon')];
  t.true(needsDeviceSelectLayer(mixed[1]!, mixed), '"NVIDIA H200" would also match adapter 0');
  t.false(needsDeviceSelectLayer(mixed[0]!, mixed));
  t.false(needsDeviceSelectLayer(mixed[2]!, mixed));
});

test('deviceSelectEnv adds drover\'s layer to what the environment already has', (t) => {
  const env = deviceSelectEnv('/layers/drover', { name: 'NVIDIA H200', ordinal: 3 }, { VK_ADD_LAYER_PATH: '/other', VK_INSTANCE_LAYERS: 'VK_LAYER_KHRONOS_validation' });
  t.deepEqual(env, {
    VK_ADD_LAYER_PATH: '/layers/drover:/other',
    VK_INSTANCE_LAYERS: 'VK_LAYER_DROVER_device_select:VK_LAYER_KHRONOS_validation',
    DROVER_VK_DEVICE_NAME: 'NVIDIA H200',
    DROVER_VK_DEVICE_ORDINAL: '3',
    NODEVICE_SELECT: '1',
  });
  const again = deviceSelectEnv('/layers/drover', { name: 'x', ordinal: 0 }, env);
  t.is(again.VK_ADD_LAYER_PATH, '/layers/drover:/other', 'set twice, listed once');
  t.is(again.VK_INSTANCE_LAYERS, 'VK_LAYER_DROVER_device_select:VK_LAYER_KHRONOS_validation');
  // The loader ignores VK_ADD_LAYER_PATH while VK_LAYER_PATH is set; old loaders know only the latter.
  t.is(deviceSelectEnv('/layers/drover', { name: 'x', ordinal: 0 }, { VK_LAYER_PATH: '/mine' }).VK_LAYER_PATH, '/layers/drover:/mine');
  t.is(deviceSelectEnv('/layers/drover', { name: 'x', ordinal: 0 }, {}, { viaLayerPath: true }).VK_LAYER_PATH, '/layers/drover');
  t.false('VK_LAYER_PATH' in deviceSelectEnv('/layers/drover', { name: 'x', ordinal: 0 }, {}));
});

twins('drover gpus lists identically named adapters under their own indices', (t) => {
  t.deepEqual(ready.adapters.map((a) => a.index), [0, 1]);
  t.is(ready.adapters[0]!.name, ready.adapters[1]!.name);
});

twins('--gpu 0 and --gpu 1 each bind a process to exactly one of the twins, which computes', async (t) => {
  const [first, second] = await Promise.all([bindInChild(0), bindInChild(1)]);
  for (const [gpu, seen] of [[0, first], [1, second]] as const) {
    t.falsy(seen.error, JSON.stringify(seen.error));
    t.is(seen.adapter.index, gpu);
    t.is(seen.adapter.name, ready.adapters[gpu]!.name);
    t.deepEqual(seen.sum, [4, 6]);
    t.is(seen.seen.length, 1, `process for --gpu ${gpu} sees only its adapter: ${JSON.stringify(seen.seen)}`);
    t.is(seen.ordinal, String(gpu), 'the layer keeps the twin of that rank');
  }
});

twins('--gpu 2 with two adapters is a clear DROVER_ERR_NO_GPU naming both', async (t) => {
  const result = await bindInChild(2);
  t.is(result.error?.code, 'DROVER_ERR_NO_GPU');
  t.regex(result.error?.message, /^--gpu 2: there are only 2 adapters \(0: llvmpipe.*, 1: llvmpipe/);
});

twins('a process bound to a twin that does not exist sees no adapter, never another one', async (t) => {
  const env = { ...ready.env, ...deviceSelectEnv(await deviceSelectLayerDir(), { name: ready.adapters[0]!.name, ordinal: 2 }, {}) };
  const { stdout } = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'bin', 'drover.js'), 'gpus', '--json'], { env: { ...process.env, ...env }, timeout: 60_000 });
  t.deepEqual(JSON.parse(stdout), []);
});

twins('drover train --gpus 0,1 on twin adapters starts two workers, one per twin, and trains', async (t) => {
  const dir = await tempDir(t);
  const job = await writeGpuTrainingJob(dir, 'gpu-twins', { minWorkers: 2, joinTimeoutMs: 180_000 });
  const run = spawnDrover(t, ['train', '--config', job, '--gpus', '0,1'], { CI: 'true', ...ready.env });
  const end = await run.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 300_000);
  t.is(end.status, 'completed');
  const joins = run.sink.events('worker_join').map((j) => String(j.msg)).sort();
  t.is(joins.length, 2);
  t.true(joins.some((m) => m.includes(`software adapter 0: ${ready.adapters[0]!.name}`)), joins.join(' | '));
  t.true(joins.some((m) => m.includes(`software adapter 1: ${ready.adapters[1]!.name}`)), joins.join(' | '));
  t.is(await run.exited, 0);
});
