/**
 * Process entry of a worker (`node --import tsx src/worker/main.ts --coordinator host:port`),
 * used by local clusters and tests; `drover worker` calls runWorker the same way. JSON log lines
 * on stdout; exit code 0 when the job completed or the worker was stopped, 1 on an error.
 */
import { parseArgs } from 'node:util';
import { DroverError } from '../errors.ts';
import type { BackendChoice } from '../model/backend.ts';
import { createLogger } from '../telemetry/logger.ts';
import { runWorker } from './run-worker.ts';

const { values } = parseArgs({
  options: {
    coordinator: { type: 'string' },
    token: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    name: { type: 'string' },
    job: { type: 'string' },
    'tls-ca': { type: 'string' },
    tls: { type: 'boolean' },
    'reconnect-ms': { type: 'string' },
    'simulate-compute-ms': { type: 'string' },
    'simulate-ms-per-sample': { type: 'string' },
  },
  strict: true,
});

const log = createLogger();
if (!values.coordinator) {
  process.stderr.write('worker: --coordinator host:port is required\n');
  process.exit(2);
}
const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  });
}
try {
  const result = await runWorker({
    coordinator: values.coordinator,
    token: values.token,
    backend: values.backend as BackendChoice | undefined,
    threads: values.threads ? Number(values.threads) : undefined,
    name: values.name,
    jobId: values.job,
    tls: values['tls-ca'] ? { ca: values['tls-ca'] } : values.tls ? {} : undefined,
    reconnectMs: values['reconnect-ms'] ? Number(values['reconnect-ms']) : undefined,
    simulateComputeMs: values['simulate-compute-ms'] ? Number(values['simulate-compute-ms']) : undefined,
    simulateMsPerSample: values['simulate-ms-per-sample'] ? Number(values['simulate-ms-per-sample']) : undefined,
    log,
    signal: controller.signal,
  });
  log.info({ status: result.status, sessions: result.sessions, tasks: result.tasks }, `worker finished: ${result.status}`);
  process.exit(0);
} catch (error) {
  const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
  log.error({ code, err: error }, `worker failed: ${(error as Error).message}`);
  process.exit(1);
}
