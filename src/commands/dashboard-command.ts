import { once } from 'node:events';
import type { Command } from 'commander';
import { DEFAULT_DASHBOARD_PORT, startDashboard } from '../telemetry/dashboard.ts';
import { port } from './flags.ts';

/** `drover dashboard`: the live page of a run log, served until Ctrl-C. */
export function addDashboardCommand(program: Command): Command {
  return program
    .command('dashboard')
    .description('serve a web page that follows a run log live (or shows a finished one)')
    .requiredOption('--log <file>', 'the JSON event log of a run')
    .option('--port <n>', 'port (0 = any free port)', port, DEFAULT_DASHBOARD_PORT)
    .option('--host <address>', 'interface to listen on', '127.0.0.1')
    .action(serveDashboard);
}

async function serveDashboard(flags: { log: string; port: number; host: string }): Promise<void> {
  const dashboard = await startDashboard({ logPath: flags.log, port: flags.port, host: flags.host });
  process.stdout.write(`dashboard: ${dashboard.url} (Ctrl-C to stop)\n`);
  await once(process, 'SIGINT');
  await dashboard.close();
}
