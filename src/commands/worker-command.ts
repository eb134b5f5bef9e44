import { Option, type Command } from 'commander';
import type { BackendChoice } from '../model/backend.ts';
import { backendOption, nonNegativeInt, positiveInt } from './flags.ts';
import { interruptSignal, signalExitCode, type StopSignal } from './signals.ts';

interface WorkerFlags {
  coordinator?: string;
  token?: string;
  tlsCa?: string;
  tls?: boolean;
  backend?: BackendChoice;
  threads?: number;
  gpu?: number;
  name?: string;
  job?: string;
  reconnectMs?: number;
  waitForResume?: boolean;
  log?: string;
  simulateComputeMs?: number;
  simulateMsPerSample?: number;
}

/** `drover worker`: joins a coordinator and computes gradients until the job ends. */
export function addWorkerCommand(program: Command): Command {
  return program
    .command('worker')
    .description('join a coordinator and compute gradients on the shards it assigns, until the job ends')
    .option('--coordinator <host:port>', 'address of the coordinator (default: DROVER_COORDINATOR, then MASTER_ADDR:MASTER_PORT, then PET_MASTER_ADDR:PET_MASTER_PORT)')
    .addOption(new Option('--token <secret>', 'shared secret of the job').env('DROVER_TOKEN'))
    .option('--tls-ca <file>', 'connect with TLS, trusting this CA certificate (PEM)')
    .option('--tls', 'connect with TLS, trusting the system roots')
    .addOption(backendOption())
    .option('--threads <n>', 'compute threads (1-8): oneDNN\'s when its kernels are on, else the wasm backend\'s', positiveInt)
    .option('--gpu <n>', 'compute on this WebGPU adapter (index of `drover gpus`; implies --backend webgpu)', nonNegativeInt)
    .option('--name <name>', 'name shown in the coordinator\'s log (default: the id it assigns)')
    .option('--job <id>', 'join only this job id')
    .option('--reconnect-ms <ms>', 'keep trying to reach or rejoin the coordinator this long', nonNegativeInt)
    .option('--wait-for-resume', 'when the coordinator stops the job before it completed, keep rejoining (for --reconnect-ms) until a restarted coordinator resumes it (Kubernetes)')
    .option('--log <file>', 'also write the JSON log here')
    // Benchmarks and scheduling tests: no tfjs, a fixed wait per task and zero gradients.
    .addOption(new Option('--simulate-compute-ms <ms>').argParser(nonNegativeInt).hideHelp())
    .addOption(new Option('--simulate-ms-per-sample <ms>').argParser(Number).hideHelp())
    .action(work);
}

async function work(flags: WorkerFlags): Promise<void> {
  const [{ createRunFeed }, { runWorker }, { resolveCoordinatorAddress }] = await Promise.all([
    import('../telemetry/feed.ts'), import('../worker/run-worker.ts'), import('../worker/coordinator-address.ts'),
  ]);
  const coordinator = resolveCoordinatorAddress(flags.coordinator);
  let stoppedBy: StopSignal | undefined;
  // A worker has no progress of its own to draw: JSON lines, always.
  const feed = await createRunFeed({ logFile: flags.log, progress: 'never' });
  try {
    feed.logger.info({ coordinator: coordinator.address, source: coordinator.source }, `coordinator ${coordinator.address} (from ${coordinator.source})`);
    const result = await runWorker({
      coordinator: coordinator.address,
      token: flags.token,
      tls: flags.tlsCa ? { ca: flags.tlsCa } : flags.tls ? {} : undefined,
      backend: flags.backend,
      threads: flags.threads,
      gpu: flags.gpu,
      name: flags.name,
      jobId: flags.job,
      reconnectMs: flags.reconnectMs,
      waitForResume: flags.waitForResume,
      simulateComputeMs: flags.simulateComputeMs,
      simulateMsPerSample: flags.simulateMsPerSample,
      log: feed.logger,
      signal: interruptSignal(feed.logger, (name) => {
        stoppedBy = name;
      }),
    });
    feed.logger.info({ status: result.status, sessions: result.sessions, tasks: result.tasks }, `worker finished: ${result.status}`);
    // Stopped by a signal, the job is not done: the pod is to run again.
    if (result.status === 'stopped' && stoppedBy) process.exitCode = signalExitCode(stoppedBy);
  } finally {
    await feed.close();
  }
}
