/**
 * The decode-only pool task for GPU augmentation: sharp decodes (as batch-task.ts does, same
 * target and seeds), the augmentation draws and the affine are computed here, and the warp is
 * left to the device (gpu-augment.ts). Returns the decoded pixels, transferred, not copied.
 * Runs in a piscina thread (export `decodeForDevice`) or inline (`runDecodeForDevice`).
 */
import { Piscina } from 'piscina';
import sharp from 'sharp';
import { drawAugment, NO_AUGMENT, sampleAffine } from './augment.ts';
import type { BatchTask, TaskFailure } from './batch-task.ts';
import { decodeInLanes, poolDecodeTarget } from './decode-lanes.ts';
import type { DeviceSample } from './gpu-augment.ts';

if (Piscina.isWorkerThread) {
  // As in batch-task.ts: libvips' operation cache only costs memory when every input differs.
  sharp.cache(false);
}

export type DecodeForDeviceTask = Omit<BatchTask, 'shared' | 'output'>;

export interface DecodeForDeviceResult {
  /** One per sample; null where the sample failed (see failures). */
  samples: (DeviceSample | null)[];
  failures: TaskFailure[];
}

export async function runDecodeForDevice(task: DecodeForDeviceTask): Promise<DecodeForDeviceResult> {
  const { pipeline, samples, seeds } = task;
  const { geometry } = pipeline;
  const target = poolDecodeTarget(pipeline);
  const out: (DeviceSample | null)[] = new Array<DeviceSample | null>(samples.length).fill(null);
  const failures = await decodeInLanes(samples, target, task.concurrency, (i, image) => {
    const params = seeds && pipeline.augment ? drawAugment(pipeline.augment, seeds[i]!, geometry.width, geometry.height) : NO_AUGMENT;
    out[i] = {
      image,
      affine: sampleAffine(params, geometry, image.width, image.height),
      colour: { brightness: params.brightness, channelShift: params.channelShift },
    };
  });
  return { samples: out, failures };
}

/** Piscina entry: the decoded pixel buffers are transferred back. */
export async function decodeForDevice(task: DecodeForDeviceTask): Promise<DecodeForDeviceResult> {
  const result = await runDecodeForDevice(task);
  const buffers = new Set<ArrayBuffer>();
  for (const s of result.samples) {
    const data = s?.image.data;
    // Only buffers the pixels own outright (sharp may hand out views of a larger pool).
    if (data && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer) buffers.add(data.buffer);
  }
  return Piscina.move({ [Piscina.transferableSymbol]: [...buffers], [Piscina.valueSymbol]: result } as never) as unknown as DecodeForDeviceResult;
}
