import test from 'ava';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadCheckpoint } from '../src/job/checkpoint.ts';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { spawnDrover, spawnWorker, tempDir } from './helpers/cluster.ts';

// A second SIGTERM (or Ctrl-C) to `drover coordinator` while it writes: real processes, real signals, real files.

test.serial('a coordinator signalled again while it writes its stop checkpoint finishes the write: a whole checkpoint, no temporary file, exit 143', async (t) => {
  const dir = await tempDir(t, 'drover-coordinator-signals-');
  const out = path.join(dir, 'out');
  const jobFile = path.join(dir, 'job.json');
  // A wide dense layer (~25 MB of weights, 3x with Adam's slots): the checkpoint takes a while to write.
  await writeFile(jobFile, JSON.stringify({
    name: 'coordinator-signals',
    seed: 7,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 3200 + 32, validationSize: 32, limitTest: 32 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 8000 }] },
    train: { epochs: 1, batchSize: 32, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.001 } },
    output: { dir: out },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 1, checkpointEvery: 1000, joinTimeoutMs: 60_000, stepDeadlineMs: 120_000 },
  }));
  const coordinator = spawnDrover(t, ['coordinator', '--config', jobFile]);
  const listening = await coordinator.sink.waitFor((l) => typeof l.port === 'number', 'the coordinator listening', 120_000);
  spawnWorker(t, listening.port as number, { name: 'simulated', args: ['--simulate-compute-ms', '1'] });
  await coordinator.sink.waitFor((l) => l.event === 'step', 'the first step', 120_000);
  coordinator.kill('SIGTERM'); // finish the step, checkpoint, stop
  // The second signal while the checkpoint is being written: the window a cut write would hit.
  const writing = await coordinator.sink.waitFor((l) => /^writing checkpoint/.test(String(l.msg)), 'the stop checkpoint to start', 120_000);
  coordinator.kill('SIGTERM');
  t.is(await coordinator.exited, 143);
  t.true(coordinator.sink.lines.some((l) => /finishing the checkpoint or model being written/.test(String(l.msg))), 'the second signal waited for the write');
  const file = path.join(out, 'latest', 'checkpoint.drover');
  t.true(existsSync(file), 'the checkpoint was written to the end');
  const checkpoint = await loadCheckpoint(file);
  t.is(checkpoint.state.step, writing.step as number);
  t.deepEqual((await readdir(path.join(out, 'latest'))).filter((name) => name.includes('.tmp')), [], 'no half-written file');
  t.false(existsSync(path.join(out, 'latest', 'model')), 'nothing exported');
});
