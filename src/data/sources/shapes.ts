/** `kind: shapes`: the generated set of coloured shapes (src/data/shapes.ts), held in memory as it is. */
import { z } from 'zod';
import type { DataSource } from './source.ts';

export const shapesSpecSchema = z.strictObject({
  kind: z.literal('shapes'),
  dir: z.string().min(1).optional(),
  perClass: z.number().int().positive().default(300),
  size: z.number().int().min(16).default(32),
});
export type ShapesSpec = z.output<typeof shapesSpecSchema>;

export const shapesSource = {
  kind: 'shapes',
  schema: shapesSpecSchema,
  async open(spec) {
    // Loaded on demand: the generator needs sharp.
    const { openShapesDataset } = await import('../shapes.ts');
    return openShapesDataset(spec);
  },
} satisfies DataSource<'shapes', typeof shapesSpecSchema>;
