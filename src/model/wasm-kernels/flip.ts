import * as tf from '@tensorflow/tfjs';

/**
 * A filter [fH, fW, a, b] flipped in space, for the input gradients. 1x1 filters (most of a
 * MobileNet) come back as they are: the wasm Reverse kernel copies through a slow index loop
 * even when there is nothing to reverse (3.7 ms for a [1, 1, 160, 960] filter).
 */
export function flipSpatially(filter: tf.Tensor4D): tf.Tensor4D {
  const [fh, fw] = filter.shape;
  if (fh === 1 && fw === 1) return filter;
  return tf.reverse(filter, [0, 1]);
}
