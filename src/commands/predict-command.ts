import type { Command } from 'commander';
import type { BackendChoice } from '../model/backend.ts';
import { backendOption, positiveInt } from './flags.ts';

interface PredictFlags {
  top: number;
  batchSize: number;
  json?: boolean;
  backend?: BackendChoice;
}

/** `drover predict <modelDir> <images...>`: the flags; the work is predictImages (./predict.ts), loaded when it runs. */
export function addPredictCommand(program: Command): Command {
  return program
    .command('predict <modelDir> <images...>')
    .description('print the most likely classes of each image')
    .option('--top <k>', 'classes listed per image', positiveInt, 3)
    .option('--batch-size <n>', 'images per forward pass', positiveInt, 32)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(predict);
}

async function predict(modelDir: string, images: string[], flags: PredictFlags): Promise<void> {
  const { formatPredictions, predictImages } = await import('./predict.ts');
  const report = await predictImages({ modelDir, images, topK: flags.top, batchSize: flags.batchSize, backend: flags.backend });
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPredictions(report));
  if (report.failed > 0) process.exitCode = 1;
}
