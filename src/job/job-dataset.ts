import { access } from 'node:fs/promises';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../data/idx.ts';
import { openDataset } from '../data/open.ts';
import { openShapesDataset } from '../data/shapes.ts';
import type { Dataset } from '../data/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { DataSpec } from './job-file.ts';

/** Opens the dataset a job names; `default` is Fashion-MNIST where installed, else generated shapes. */
export async function openJobDataset(spec: DataSpec, log: Logger): Promise<Dataset> {
  switch (spec.kind) {
    case 'default': {
      if (await exists(FASHION_MNIST_DIR)) return openIdxDataset({ dir: FASHION_MNIST_DIR, name: 'fashion-mnist' });
      log.info(
        { reason: `${FASHION_MNIST_DIR} not found (apt-get install dataset-fashion-mnist)` },
        'Fashion-MNIST is not installed: training on generated shapes instead',
      );
      return openShapesDataset({ perClass: 300, size: 32 });
    }
    case 'shapes':
      return openShapesDataset(spec);
    default:
      return openDataset(spec, { logger: log });
  }
}

/** How the job's samples became model input (scaling, resizing), recorded with the exported model. */
export function samplePreparation(spec: DataSpec): { preprocess: PreprocessSpec; resize: ResizeModeSpec } {
  return {
    preprocess: 'preprocess' in spec ? spec.preprocess : 'rescale',
    resize: 'resize' in spec ? spec.resize : 'cover',
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
