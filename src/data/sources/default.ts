/** `kind: default`: Fashion-MNIST where it is installed, else the generated shapes. */
import { access } from 'node:fs/promises';
import { z } from 'zod';
import { FASHION_MNIST_DIR, openIdxDataset } from '../idx.ts';
import type { DataSource } from './source.ts';

export const defaultSpecSchema = z.strictObject({ kind: z.literal('default') });

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

export const defaultSource = {
  kind: 'default',
  schema: defaultSpecSchema,
  async open(_spec, context) {
    if (await exists(FASHION_MNIST_DIR)) return openIdxDataset({ dir: FASHION_MNIST_DIR, name: 'fashion-mnist' });
    context.logger.info(
      { reason: `${FASHION_MNIST_DIR} not found (apt-get install dataset-fashion-mnist)` },
      'Fashion-MNIST is not installed: training on generated shapes instead',
    );
    const { openShapesDataset } = await import('../shapes.ts');
    return openShapesDataset({ perClass: 300, size: 32 });
  },
} satisfies DataSource<'default', typeof defaultSpecSchema>;
