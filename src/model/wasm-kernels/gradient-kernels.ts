import * as tf from '@tensorflow/tfjs';
import { conv2dFilterGrad } from './conv2d-filter-grad.ts';
import { conv2dInputGrad } from './conv2d-input-grad.ts';
import { depthwiseFilterGrad } from './depthwise-filter-grad.ts';
import { depthwiseInputGrad } from './depthwise-input-grad.ts';

/**
 * tfjs kernel configs for the convolution gradients on the wasm backend. Each kernel calls tf
 * ops inside a tidy: the engine does not record ops run inside a kernel on the gradient tape,
 * and returns the Tensor it gets back as the kernel's output.
 */

type Strides = [number, number] | number;
type Padding = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

interface Conv2DBackpropAttrs {
  strides: Strides;
  pad: Padding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: Rounding;
}

interface DepthwiseBackpropAttrs {
  strides: Strides;
  dilations: Strides;
  pad: Padding;
  dimRoundingMode?: Rounding;
}

/** A Tensor for a kernel input (kernels may be handed bare TensorInfos). */
function tensorOf<T extends tf.Tensor>(info: tf.TensorInfo): T {
  return (info instanceof tf.Tensor ? info : tf.engine().makeTensorFromTensorInfo(info)) as T;
}

function assertFloat32(kernel: string, ...inputs: tf.TensorInfo[]): void {
  for (const input of inputs) {
    if (input.dtype !== 'float32') throw new TypeError(`${kernel} on wasm supports float32 tensors only, got ${input.dtype}`);
  }
}

const toNHWC = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 2, 3, 1]);
const toNCHW = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 3, 1, 2]);
const nhwcShape = ([n, c, h, w]: number[]): [number, number, number, number] => [n!, h!, w!, c!];

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs }) => {
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropAttrs & {
      filterShape: [number, number, number, number];
    };
    assertFloat32(tf.Conv2DBackpropFilter, inputs.x!, inputs.dy!);
    return tf.tidy(() => {
      let x = tensorOf<tf.Tensor4D>(inputs.x!);
      let dy = tensorOf<tf.Tensor4D>(inputs.dy!);
      if (dataFormat === 'NCHW') {
        x = toNHWC(x);
        dy = toNHWC(dy);
      }
      const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      return conv2dFilterGrad(x, dy, info);
    });
  },
};

export const conv2dBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs }) => {
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Conv2DBackpropAttrs & {
      inputShape: [number, number, number, number];
    };
    assertFloat32(tf.Conv2DBackpropInput, inputs.dy!, inputs.filter!);
    return tf.tidy(() => {
      const filter = tensorOf<tf.Tensor4D>(inputs.filter!);
      let dy = tensorOf<tf.Tensor4D>(inputs.dy!);
      const channelsFirst = dataFormat === 'NCHW';
      if (channelsFirst) dy = toNHWC(dy);
      const shape = channelsFirst ? nhwcShape(inputShape) : inputShape;
      const info = tf.backend_util.computeConv2DInfo(shape, filter.shape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const dx = conv2dInputGrad(dy, filter, info);
      return channelsFirst ? toNCHW(dx) : dx;
    });
  },
};

export const depthwiseBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs }) => {
    const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs as unknown as DepthwiseBackpropAttrs & {
      inputShape: [number, number, number, number];
    };
    assertFloat32(tf.DepthwiseConv2dNativeBackpropInput, inputs.dy!, inputs.filter!);
    return tf.tidy(() => {
      const filter = tensorOf<tf.Tensor4D>(inputs.filter!);
      const dy = tensorOf<tf.Tensor4D>(inputs.dy!);
      const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape, strides, dilations, pad, dimRoundingMode, true);
      return depthwiseInputGrad(dy, filter, info);
    });
  },
};

export const depthwiseBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs }) => {
    const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs as unknown as DepthwiseBackpropAttrs & {
      filterShape: [number, number, number, number];
    };
    assertFloat32(tf.DepthwiseConv2dNativeBackpropFilter, inputs.x!, inputs.dy!);
    return tf.tidy(() => {
      const x = tensorOf<tf.Tensor4D>(inputs.x!);
      const dy = tensorOf<tf.Tensor4D>(inputs.dy!);
      const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, strides, dilations, pad, dimRoundingMode, true);
      return depthwiseFilterGrad(x, dy, info);
    });
  },
};

/** Every kernel this module registers on the wasm backend. */
export const gradientKernelConfigs: readonly tf.KernelConfig[] = [
  conv2dBackpropFilterConfig,
  conv2dBackpropInputConfig,
  depthwiseBackpropInputConfig,
  depthwiseBackpropFilterConfig,
];
