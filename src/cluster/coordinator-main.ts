/**
 * Process entry of a coordinator (`node --import tsx src/cluster/coordinator-main.ts --config
 * job.yaml --port P [--resume]`), used by tests that kill it; `drover coordinator` calls
 * runCoordinator the same way. JSON log lines on stdout; exit code 1 on an error.
 */
import { parseArgs } from 'node:util';
import { loadJobFile } from '../config/job.ts';
import { runCoordinator } from '../coordinator/run-coordinator.ts';
import { DroverError } from '../errors.ts';
import { createLogger } from '../telemetry/logger.ts';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    resume: { type: 'boolean' },
    'min-workers': { type: 'string' },
    token: { type: 'string' },
  },
  strict: true,
});

const log = createLogger();
const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  });
}
try {
  if (!values.config) throw new DroverError('--config <job file> is required');
  const job = await loadJobFile(values.config);
  await runCoordinator({
    job,
    port: values.port === undefined ? undefined : Number(values.port),
    host: values.host,
    resume: values.resume,
    minWorkers: values['min-workers'] === undefined ? undefined : Number(values['min-workers']),
    token: values.token,
    log,
    signal: controller.signal,
  });
  process.exit(0);
} catch (error) {
  const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
  log.error({ code, err: error }, `coordinator failed: ${(error as Error).message}`);
  process.exit(1);
}
