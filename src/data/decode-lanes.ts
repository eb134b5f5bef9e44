/**
 * Decodes a task's samples on a few concurrent lanes (while one sample's pixels are used on this
 * thread, the next ones decode on libuv's pool), handing each decoded image to `use` and
 * collecting the failures, sorted by sample index; and the decode target both pool tasks use.
 * Shared by batch-task.ts and gpu-decode.ts.
 */
import { isMainThread } from 'node:worker_threads';
import type { TaskFailure } from './batch-task.ts';
import { decodeSample, type DecodeTarget, type SampleInput } from './decode.ts';
import type { PipelineConfig } from './pipeline-config.ts';
import type { PixelSource } from './warp.ts';

/** The pipeline's decode target; files are read synchronously on a pool thread only. */
export function poolDecodeTarget(pipeline: PipelineConfig): DecodeTarget {
  const { geometry, channels } = pipeline;
  return {
    width: geometry.width,
    height: geometry.height,
    resize: geometry.resize,
    channels,
    maxInputPixels: pipeline.maxInputPixels,
    maxFileBytes: pipeline.maxFileBytes,
    syncFileRead: !isMainThread,
  };
}

export async function decodeInLanes(
  samples: SampleInput[],
  target: DecodeTarget,
  concurrency: number | undefined,
  use: (index: number, image: PixelSource) => void,
): Promise<TaskFailure[]> {
  const failures: TaskFailure[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < samples.length) {
      const i = next++;
      let outcome;
      try {
        outcome = await decodeSample(samples[i]!, target);
      } catch (cause) {
        // decodeSample reports bad data itself; anything thrown here is unexpected, but it is
        // still one sample's problem, never the batch's.
        outcome = { ok: false as const, failure: { reason: 'corrupt' as const, detail: String((cause as Error)?.message ?? cause) } };
      }
      if (!outcome.ok) {
        failures.push({ index: i, ...outcome.failure });
        continue;
      }
      use(i, outcome.image);
    }
  };
  const lanes = Math.max(1, Math.min(concurrency ?? 2, samples.length));
  await Promise.all(Array.from({ length: lanes }, lane));
  failures.sort((a, b) => a.index - b.index);
  return failures;
}
