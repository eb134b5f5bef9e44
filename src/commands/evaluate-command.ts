import { Option, type Command } from 'commander';
import type { BackendChoice } from '../model/backend.ts';
import { backendOption, positiveInt } from './flags.ts';

interface EvaluateFlags {
  data: string;
  split?: 'train' | 'validation' | 'test';
  batchSize: number;
  json?: boolean;
  backend?: BackendChoice;
}

/** `drover evaluate <modelDir>`: the flags; the work is evaluateModel (./evaluate.ts), loaded when it runs. */
export function addEvaluateCommand(program: Command): Command {
  return program
    .command('evaluate <modelDir>')
    .description('accuracy, loss and confusion matrix of a saved model on a dataset')
    .requiredOption('--data <path|spec>', 'as train --data: an image folder, a .csv / .jsonl manifest, an IDX or CIFAR folder, a dataset spec or job file (YAML or JSON), or inline JSON')
    .addOption(new Option('--split <name>', 'split of a spec (default: test, else validation, else train)').choices(['train', 'validation', 'test']))
    .option('--batch-size <n>', 'evaluation batch size', positiveInt, 64)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(evaluate);
}

async function evaluate(modelDir: string, flags: EvaluateFlags): Promise<void> {
  const [{ evaluateModel, formatEvaluation }, { resolveDataArgument }] = await Promise.all([import('./evaluate.ts'), import('../data/data-argument.ts')]);
  const data = await resolveDataArgument(flags.data);
  const result = await evaluateModel({ modelDir, data, split: flags.split, batchSize: flags.batchSize, backend: flags.backend });
  process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : formatEvaluation(result));
}
