import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A small job file for interrupt-and-resume tests, with dropout, a validation split and Adam:
 * every piece of state a resume must restore. Its generated shapes go beside `out`.
 */
export async function writeSignalJob(dir: string, overrides: { backend: string; epochs: number; denseUnits?: number; out: string; seed?: number }): Promise<string> {
  const file = path.join(dir, `job-${path.basename(overrides.out)}.yaml`);
  await writeFile(
    file,
    [
      'name: signals',
      `seed: ${overrides.seed ?? 11}`,
      `backend: ${overrides.backend}`,
      `data: { kind: shapes, dir: ${JSON.stringify(`${overrides.out}-shapes`)}, perClass: 40, size: 16 }`,
      'model:',
      '  layers:',
      '    - { type: conv2d, filters: 4, kernelSize: 3 }',
      '    - { type: maxPool }',
      '    - { type: flatten }',
      '    - { type: dropout, rate: 0.25 }',
      `    - { type: dense, units: ${overrides.denseUnits ?? 16} }`,
      `train: { epochs: ${overrides.epochs}, batchSize: 8, optimizer: { name: adam, learningRate: 0.003 }, logEvery: 1 }`,
      `output: { dir: ${JSON.stringify(overrides.out)} }`,
    ].join('\n'),
  );
  return file;
}
