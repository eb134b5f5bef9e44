import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import path from 'node:path';
import { ConfigError } from '../src/errors.ts';
import { parseGpuSelection } from '../src/launch/gpu-selection.ts';
import { listGpuAdapters, type GpuAdapterEntry } from '../src/model/webgpu.ts';
import { spawnDrover, tempDir } from './helpers/cluster.ts';
import { writeGpuTrainingJob } from './helpers/webgpu.ts';

const execFileAsync = promisify(execFile);
const REPO_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// One worker per GPU. What runs depends on the machine: without any adapter (no Vulkan driver)
// the worker tests are skipped with the reason printed; on a machine with only a software
// adapter (CI: lavapipe), `--gpus all` must refuse and `--gpus 0` trains on the software one.

async function adaptersOrReason(): Promise<GpuAdapterEntry[] | string> {
  try {
    return await listGpuAdapters();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

const adapters = await adaptersOrReason();
const withAdapter = typeof adapters !== 'string' && adapters.length > 0 ? test.serial : test.serial.skip;
const withoutGpu = typeof adapters !== 'string' && adapters.every((a) => a.software) ? test.serial : test.serial.skip;
if (typeof adapters === 'string') console.log(`cli-gpus: GPU tests skipped: the webgpu package does not load (${adapters})`);
else if (adapters.length === 0) console.log('cli-gpus: worker tests skipped: Dawn sees no adapter (no Vulkan driver)');
else if (adapters.some((a) => !a.software)) console.log('cli-gpus: this machine has a GPU: the "no GPU" test is skipped');

test('--gpus takes "all" or distinct adapter indices, and names what is wrong otherwise', (t) => {
  t.is(parseGpuSelection('all'), 'all');
  t.deepEqual(parseGpuSelection('0,2'), [0, 2]);
  t.deepEqual(parseGpuSelection(' 1 '), [1]);
  for (const bad of ['', '0,,1', '-1', '1.5', 'gpu0', '0,0']) t.throws(() => parseGpuSelection(bad), { instanceOf: ConfigError }, bad);
});

withoutGpu('drover train --gpus all on a machine with no GPU says so and exits 1', async (t) => {
  const run = spawnDrover(t, ['train', '--gpus', 'all', '--epochs', '1']);
  t.is(await run.exited, 1);
  t.regex(run.stderr(), /--gpus all: this machine has no GPU.*\[DROVER_ERR_NO_GPU\]/);
  if ((adapters as GpuAdapterEntry[]).length > 0) t.regex(run.stderr(), /Dawn sees only software adapters \(0: /);
});

withAdapter('drover gpus lists every adapter in --gpu order, software ones marked', async (t) => {
  const { stdout } = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'bin', 'drover.js'), 'gpus', '--json'], { timeout: 60_000 });
  const listed = JSON.parse(stdout) as GpuAdapterEntry[];
  t.deepEqual(listed, adapters as GpuAdapterEntry[]);
  t.deepEqual(listed.map((a) => a.index), listed.map((_, i) => i));
});

withAdapter('drover train --gpus 0 starts one webgpu worker bound to adapter 0, names it in the join line, and trains', async (t) => {
  const dir = await tempDir(t);
  const job = await writeGpuTrainingJob(dir, 'cli-gpus', { minWorkers: 1, joinTimeoutMs: 120_000 });
  const run = spawnDrover(t, ['train', '--config', job, '--gpus', '0'], { CI: 'true' });
  const end = await run.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 240_000);
  t.is(end.status, 'completed');
  const joins = run.sink.events('worker_join');
  t.is(joins.length, 1);
  const first = (adapters as GpuAdapterEntry[])[0]!;
  t.is(joins[0]!.backend, 'webgpu');
  t.true(String(joins[0]!.msg).includes(`${first.software ? 'software adapter' : 'GPU'} 0: ${first.name}`), String(joins[0]!.msg));
  t.is(await run.exited, 0);
});

withAdapter('drover worker --gpu refuses a backend other than webgpu', async (t) => {
  const worker = spawnDrover(t, ['worker', '--coordinator', '127.0.0.1:1', '--gpu', '0', '--backend', 'wasm', '--reconnect-ms', '0']);
  t.is(await worker.exited, 1);
  t.regex(worker.stderr(), /--gpu 0 binds a WebGPU adapter: it needs --backend webgpu \(or auto\), not wasm \[DROVER_ERR_CONFIG\]/);
});
