import * as tf from '@tensorflow/tfjs';

/**
 * Tile for the wasm backend when it only repeats axes of size 1 (a broadcast: tfjs-core's
 * FusedBatchNorm gradient tiles [1, 1, 1, C] scale and variance to x's shape), as a
 * broadcasting Add onto zeros (Fill: tf.zeros would build them in JavaScript and copy). The stock kernel copies element by element through a generic
 * index loop: 4.5 ms for [1, 1, 1, 1280] -> [16, 3, 3, 1280] in MobileNetV2 fine-tuning, 31 ms
 * a step. Other tilings, and non-numeric dtypes, go to the stock kernel.
 */
export function tileKernelConfig(): tf.KernelConfig | undefined {
  const stock = tf.getKernel(tf.Tile, 'wasm');
  if (stock === undefined) return undefined;
  return {
    kernelName: tf.Tile,
    backendName: 'wasm',
    setupFunc: stock.setupFunc,
    kernelFunc: (args) => {
      const x = args.inputs.x!;
      const { reps } = args.attrs as unknown as { reps: number[] };
      const broadcast = reps.length === x.shape.length && reps.every((r, i) => r === 1 || x.shape[i] === 1);
      if (!broadcast || (x.dtype !== 'float32' && x.dtype !== 'int32')) return stock.kernelFunc(args);
      const outShape = x.shape.map((d, i) => d * reps[i]!);
      return tf.tidy(() => tf.add(tf.fill(outShape, 0, x.dtype), x instanceof tf.Tensor ? x : tf.engine().makeTensorFromTensorInfo(x)));
    },
  };
}
