/**
 * `drover predict MODEL_DIR image...`: the top-k classes of each image, decoded by the same
 * pipeline (resize, channels, preprocess) the model was trained with. One bad image is an
 * error line for that image, never a failed run; the caller decides the exit code from `failed`.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { ConfigError, ModelMetadataError } from '../errors.ts';
import { decodeSample, type SampleInput } from '../data/decode.ts';
import { createSampleDecoder, type SampleDecoder } from '../data/open.ts';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import type { InputShape } from '../data/types.ts';
import { activeBackend, initBackend, BACKEND_CHOICES, type BackendChoice } from '../model/backend.ts';
import { loadModel } from '../model/export.ts';
import { readFloat32 } from '../model/tensor-read.ts';

/** A saved drover model ready for inference: what its outputs mean and what input it wants. */
export interface Classifier {
  model: tf.LayersModel;
  classNames: string[];
  preprocess: PreprocessSpec;
  resize: ResizeModeSpec;
  inputShape: InputShape;
  location: string;
}

/**
 * Loads a model saved by drover and checks it carries what inference needs. A missing folder
 * or model.json is a ModelFileError (DROVER_ERR_MODEL_FILE); a model without drover's class
 * names, or with an input size that is not fixed, is a ModelMetadataError.
 */
export async function loadClassifier(location: string): Promise<Classifier> {
  const loaded = await loadModel(location);
  const { model, classNames, metadata } = loaded;
  try {
    if (!metadata || !classNames) {
      throw new ModelMetadataError(
        `${location}: the model has no class names (model.json lacks userDefinedMetadata.drover): save it with drover (saveModel / drover train) to use it here`,
        location,
      );
    }
    const shape = metadata.inputShape ?? model.inputs[0]?.shape.slice(1);
    if (!shape || shape.length !== 3 || !shape.every((d): d is number => typeof d === 'number' && d > 0)) {
      throw new ModelMetadataError(`${location}: the model's input size is not fixed (input shape ${JSON.stringify(model.inputs[0]?.shape)}): cannot tell how to resize images`, location);
    }
    const channels = shape[2];
    if (channels !== 1 && channels !== 3) {
      throw new ModelMetadataError(`${location}: the model takes ${channels}-channel input; drover decodes 1 (grey) or 3 (RGB) channels`, location);
    }
    return { model, classNames, preprocess: metadata.preprocess, resize: metadata.resize ?? 'cover', inputShape: shape as InputShape, location };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** Selects the backend asked for; with none, keeps the active one (or picks as `auto` does). */
export async function ensureBackend(choice: BackendChoice | undefined): Promise<void> {
  if (choice !== undefined) await initBackend(choice);
  else if (activeBackend() === undefined) await initBackend('auto');
}

export const predictOptionsSchema = z.strictObject({
  /** A model directory (or model.json path, or URL) saved by drover. */
  modelDir: z.string().min(1),
  /** Image files (JPEG, PNG, WebP, GIF, TIFF). */
  images: z.array(z.string().min(1)).min(1),
  /** Classes listed per image (default 3); more than the model has lists them all. */
  topK: z.number().int().positive().default(3),
  backend: z.enum(BACKEND_CHOICES as unknown as [BackendChoice, ...BackendChoice[]]).optional(),
  /** Images per forward pass (default 32). */
  batchSize: z.number().int().positive().default(32),
});
export type PredictOptions = z.input<typeof predictOptionsSchema>;

export interface ClassScore {
  className: string;
  /** Output index of the class. */
  index: number;
  probability: number;
}

/** One image's outcome: its top-k classes (most probable first), or why it could not be read. */
export type ImagePrediction =
  | { image: string; ok: true; top: ClassScore[] }
  | { image: string; ok: false; reason: string; detail: string };

export interface PredictionReport {
  classNames: string[];
  /** One entry per image, in the order given. */
  results: ImagePrediction[];
  /** How many images could not be read or decoded (the CLI exits non-zero when > 0). */
  failed: number;
}

/** Turns a zod failure on options into a ConfigError naming the field. */
export function optionsError(error: z.ZodError, what: string): ConfigError {
  const issue = error.issues[0]!;
  const segments = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') segments.push(issue.keys[0]!);
  const field = segments.join('.') || '(root)';
  const text = issue.code === 'unrecognized_keys' ? `unknown option ${issue.keys.join(', ')}` : issue.message;
  return new ConfigError(`${what} options.${field}: ${text}`, field);
}

/** The evaluation (non-augmenting) pipeline the model was trained with, as a data spec. */
export function pipelineSpec(classifier: Classifier, path: string): Record<string, unknown> {
  const [height, width, channels] = classifier.inputShape;
  return { kind: 'folder', path, imageSize: [height, width], channels, resize: classifier.resize, preprocess: classifier.preprocess };
}

/**
 * Predicts the top-k classes of each image. Images that cannot be read or decoded come back
 * as `{ ok: false, reason, detail }` entries (reasons as in data_skip logs: unreadable,
 * corrupt, truncated, unsupported_format, ...); the others are unaffected.
 */
export async function predictImages(options: PredictOptions): Promise<PredictionReport> {
  const parsed = predictOptionsSchema.safeParse(options);
  if (!parsed.success) throw optionsError(parsed.error, 'predict');
  const { modelDir, images, topK, backend, batchSize } = parsed.data;
  await ensureBackend(backend);
  const classifier = await loadClassifier(modelDir);
  // A handful of images decode faster on this thread than a pool's start-up costs.
  const decoder = createSampleDecoder(pipelineSpec(classifier, modelDir), classifier.inputShape, { threads: images.length > batchSize ? undefined : 0 });
  try {
    const k = Math.min(topK, classifier.classNames.length);
    const results: ImagePrediction[] = [];
    for (let start = 0; start < images.length; start += batchSize) {
      results.push(...(await predictChunk(classifier, decoder, images.slice(start, start + batchSize), k)));
    }
    return { classNames: classifier.classNames, results, failed: results.filter((r) => !r.ok).length };
  } finally {
    await decoder.close();
    classifier.model.dispose();
  }
}

async function predictChunk(classifier: Classifier, decoder: SampleDecoder, images: string[], k: number): Promise<ImagePrediction[]> {
  const samples: SampleInput[] = images.map((image) => ({ path: image }));
  const batch = await decoder.evaluation.load(samples, new Int32Array(images.length));
  const failed = new Set(batch.skipped ?? []);
  let probabilities: Float32Array = new Float32Array(0);
  if (batch.n > 0) {
    const output = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [batch.n, ...batch.shape]);
      return classifier.model.apply(x, { training: false }) as tf.Tensor;
    });
    try {
      [probabilities] = await readFloat32([output]);
    } finally {
      output.dispose();
    }
  }
  batch.release?.();
  const classes = classifier.classNames.length;
  const results: ImagePrediction[] = [];
  let row = 0;
  for (const [i, image] of images.entries()) {
    if (failed.has(i)) {
      results.push({ image, ...(await failureOf(decoder, samples[i]!)) });
      continue;
    }
    const probs = probabilities.subarray(row * classes, (row + 1) * classes);
    row++;
    const order = Array.from({ length: classes }, (_, c) => c).sort((a, b) => probs[b]! - probs[a]! || a - b);
    const top = order.slice(0, k).map((index) => ({ className: classifier.classNames[index]!, index, probability: probs[index]! }));
    results.push({ image, ok: true, top });
  }
  return results;
}

/**
 * Why a sample failed. The batch only says which ones did; decoding the (rare) failures again
 * on this thread gives the reason without parsing the skip log.
 */
async function failureOf(decoder: SampleDecoder, sample: SampleInput): Promise<{ ok: false; reason: string; detail: string }> {
  const { geometry, channels, maxInputPixels, maxFileBytes } = decoder.evaluation.pipeline;
  const outcome = await decodeSample(sample, { width: geometry.width, height: geometry.height, resize: geometry.resize, channels, maxInputPixels, maxFileBytes });
  if (outcome.ok) return { ok: false, reason: 'corrupt', detail: 'the image decodes alone but failed in its batch' };
  const { reason, detail, errno } = outcome.failure;
  return { ok: false, reason, detail: errno && !detail.includes(errno) ? `${detail} (${errno})` : detail };
}

/** Human-readable lines: each image, then its classes with percentages; errors on one line. */
export function formatPredictions(report: PredictionReport): string {
  const lines: string[] = [];
  const width = Math.max(...report.classNames.map((name) => name.length));
  for (const result of report.results) {
    if (!result.ok) {
      lines.push(`${result.image}: error: ${result.reason}: ${result.detail}`);
      continue;
    }
    lines.push(`${result.image}:`);
    result.top.forEach((score, rank) => {
      lines.push(`  ${rank + 1}. ${score.className.padEnd(width)}  ${(score.probability * 100).toFixed(2).padStart(6)} %`);
    });
  }
  if (report.failed > 0) lines.push(`${report.failed} of ${report.results.length} images could not be read`);
  return lines.join('\n') + '\n';
}
