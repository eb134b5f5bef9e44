// Entry of the dashboard's own thread (src/telemetry/dashboard-thread.ts). Plain JavaScript so
// that a worker thread can start it without a TypeScript loader; it brings tsx in itself.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { startDashboard } = await import('./dashboard.ts');
try {
  const dashboard = await startDashboard(workerData);
  parentPort.on('message', (message) => {
    if (message !== 'close') return;
    void dashboard.close().then(() => parentPort.close());
  });
  parentPort.postMessage({ kind: 'listening', url: dashboard.url, port: dashboard.port });
} catch (error) {
  parentPort.postMessage({ kind: 'error', message: error.message, code: error.code, field: error.field });
  parentPort.close();
}
