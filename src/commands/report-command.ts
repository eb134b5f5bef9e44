import type { Command } from 'commander';

/** `drover report <log>`: a run's learning curves and confusion matrix as image files. */
export function addReportCommand(program: Command): Command {
  return program
    .command('report <log>')
    .description('write learning curves and the confusion matrix of a run as PNG and SVG')
    .requiredOption('--out <dir>', 'output folder')
    .action(report);
}

async function report(log: string, flags: { out: string }): Promise<void> {
  const { writeReport } = await import('../telemetry/report.ts');
  const written = await writeReport({ logPath: log, outDir: flags.out });
  for (const file of written.files) process.stdout.write(`${file}\n`);
  for (const skip of written.skipped) process.stderr.write(`skipped ${skip.figure}: ${skip.reason}\n`);
}
