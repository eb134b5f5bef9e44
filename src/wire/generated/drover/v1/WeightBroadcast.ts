// Original file: proto/drover.proto

import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from '../../drover/v1/Transfer.ts';

/**
 * A full weight set (trainable and not, e.g. batch-norm statistics) of version `version`
 * (= optimizer steps applied). Workers compute a task only on the weights it names.
 */
export interface WeightBroadcast {
  'version'?: (number);
  'weights'?: (_drover_v1_Transfer | null);
}

/**
 * A full weight set (trainable and not, e.g. batch-norm statistics) of version `version`
 * (= optimizer steps applied). Workers compute a task only on the weights it names.
 */
export interface WeightBroadcast__Output {
  'version': (number);
  'weights': (_drover_v1_Transfer__Output | null);
}
