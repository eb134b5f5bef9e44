import { Command } from 'commander';
import { DroverError } from './errors.ts';
import { addCoordinatorCommand } from './commands/coordinator-command.ts';
import { addDashboardCommand } from './commands/dashboard-command.ts';
import { addEvaluateCommand } from './commands/evaluate-command.ts';
import { addGpusCommand } from './commands/gpus-command.ts';
import { addPredictCommand } from './commands/predict-command.ts';
import { addReportCommand } from './commands/report-command.ts';
import { addTrainCommand } from './commands/train-command.ts';
import { addWorkerCommand } from './commands/worker-command.ts';

// Each command module (src/commands/*-command.ts) declares its flags up front and imports its
// work only when its command runs: a worker process need not load the dashboard, the plotting
// library or the trainer's data pipeline just to start.

/** The commands, in the order `drover --help` lists them. */
const COMMANDS = [
  addTrainCommand,
  addGpusCommand,
  addCoordinatorCommand,
  addWorkerCommand,
  addDashboardCommand,
  addReportCommand,
  addPredictCommand,
  addEvaluateCommand,
];

export function buildProgram(): Command {
  const program = new Command('drover')
    .description('Train image classifiers with synchronous data-parallel SGD on Node.js')
    .showHelpAfterError();
  for (const addCommand of COMMANDS) addCommand(program);
  return program;
}

/** Entry point: runs the program and turns drover errors into one clear line and exit code 1. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof DroverError) {
      process.stderr.write(`drover: ${err.message} [${err.code}]\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

// Run directly (`node --import tsx src/cli.ts`), not when imported by bin/drover.js or tests.
if (process.argv[1]?.endsWith('/src/cli.ts')) {
  await main(process.argv);
}
