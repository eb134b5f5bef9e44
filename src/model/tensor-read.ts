import * as tf from '@tensorflow/tfjs';

/**
 * Reads tensors back to the CPU as float32 arrays, one per tensor, without `dataSync`: on a GPU
 * backend (webgpu in Node) a synchronous read throws or stalls, so every path that reads
 * weights, gradients, statistics or optimizer state awaits this instead.
 *
 * On webgpu the tensors are first joined into one on the GPU, so the read is one buffer mapping
 * rather than one per tensor (a model has tens of weights). Elsewhere each is read on its own:
 * wasm hands back a copy per read already, cpu its own array (which later ops replace, never
 * change: copy before writing into it). The tensors are not disposed.
 */
export async function readFloat32(tensors: readonly tf.Tensor[]): Promise<Float32Array[]> {
  if (tensors.length === 0) return [];
  if (tensors.length > 1 && tf.getBackend() === 'webgpu') {
    const joined = tf.tidy(() => tf.concat(tensors.map((t) => tf.reshape(tf.cast(t, 'float32'), [-1]))));
    let flat: Float32Array;
    try {
      flat = (await joined.data()) as Float32Array;
    } finally {
      joined.dispose();
    }
    const out: Float32Array[] = [];
    let offset = 0;
    for (const t of tensors) {
      out.push(flat.slice(offset, offset + t.size));
      offset += t.size;
    }
    return out;
  }
  return Promise.all(tensors.map(async (t) => toFloat32(await t.data())));
}

/** Reads one scalar. */
export async function readScalar(t: tf.Tensor): Promise<number> {
  return (await t.data())[0]!;
}

function toFloat32(values: tf.TypedArray | string[] | Uint8Array[]): Float32Array {
  if (values instanceof Float32Array) return values;
  return Float32Array.from(values as ArrayLike<number>);
}

/**
 * Hands float32 tensors' values to `use` without copying where the backend allows: on wasm, as
 * views of its heap (valid only during the call: the heap may move on the next allocation);
 * elsewhere as read copies. The tensors are not disposed.
 */
export async function withFloat32Views<T>(tensors: readonly tf.Tensor[], use: (values: Float32Array[]) => T): Promise<T> {
  const backend = tf.backend() as { typedArrayFromHeap?: (t: tf.Tensor) => tf.TypedArray };
  if (tf.getBackend() === 'wasm' && typeof backend.typedArrayFromHeap === 'function' && tensors.every((t) => t.dtype === 'float32')) {
    return use(tensors.map((t) => backend.typedArrayFromHeap!(t) as Float32Array));
  }
  return use(await readFloat32(tensors));
}
