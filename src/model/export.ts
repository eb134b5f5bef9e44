/**
 * A trained model as drover hands it over: a standard tfjs LayersModel folder (model.json +
 * weights.bin, loadable by `tf.loadLayersModel` anywhere) whose `userDefinedMetadata.drover`
 * says what the outputs mean (class names) and how pixels must be prepared (preprocess).
 */
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { z } from 'zod';
import { DroverError, ModelError, ModelFileError } from '../errors.ts';
import { preprocessSpecSchema, resizeModeSchema } from '../data/spec.ts';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import type { UrlLoadOptions } from './file-io.ts';
import { MODEL_JSON, directoryHandler, modelHandler } from './file-io.ts';
import { pinLayersByName, pinnedLayerNames } from './backbones/inference-mode.ts';

/** The key under model.json's `userDefinedMetadata`. */
export const DROVER_METADATA_KEY = 'drover';
export const MODEL_METADATA_VERSION = 1;

/** What drover stores beside the topology. Unknown keys are kept out (a newer drover may add some). */
export const modelMetadataSchema = z.object({
  formatVersion: z.literal(MODEL_METADATA_VERSION),
  /** Output index i means classNames[i]. */
  classNames: z.array(z.string().min(1)).min(1),
  /** How pixel values (0..255) become the model's input. */
  preprocess: preprocessSpecSchema,
  /** How images were brought to the input size (absent in models saved before it was recorded: cover). */
  resize: resizeModeSchema.optional(),
  /** [height, width, channels] the model was built for, when fixed. */
  inputShape: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]).optional(),
  /** Layers (backbone batch norm) that run in inference mode even while training. */
  inferenceModeLayers: z.array(z.string()).default([]),
  /** Free-form provenance: job name, backbone, epochs, accuracy... */
  info: z.record(z.string(), z.unknown()).optional(),
});
export type ModelMetadata = z.infer<typeof modelMetadataSchema>;

export interface SaveModelOptions {
  classNames: readonly string[];
  /** Default 'rescale' ([0, 1]). */
  preprocess?: PreprocessSpec;
  /** How images were brought to the input size. Default 'cover'. */
  resize?: ResizeModeSpec;
  info?: Record<string, unknown>;
  /** Split weights into files of at most this many bytes (default: one weights.bin). */
  shardBytes?: number;
}

export interface SavedModel {
  /** The model.json written. */
  modelJson: string;
  weightBytes: number;
  metadata: ModelMetadata;
}

export interface LoadedModel {
  model: tf.LayersModel;
  /** From drover's metadata; undefined for a model drover did not save. */
  classNames: string[] | undefined;
  metadata: ModelMetadata | undefined;
}

/**
 * Saves a LayersModel to a directory (created if needed; files replaced atomically) with its
 * class names and preprocessing. The class count must match the model's output width.
 */
export async function saveModel(model: tf.LayersModel, dir: string, options: SaveModelOptions): Promise<SavedModel> {
  const metadata = buildMetadata(model, options);
  const target = directoryHandler(dir, options.shardBytes === undefined ? {} : { shardBytes: options.shardBytes });
  // Added on the way out rather than with setUserDefinedMetadata: saving leaves the model as it was.
  const handler: tf.io.IOHandler = {
    save: (artifacts) =>
      target.save!({
        ...artifacts,
        userDefinedMetadata: { ...(artifacts.userDefinedMetadata ?? {}), [DROVER_METADATA_KEY]: metadata as unknown as {} },
      }),
  };
  const result = await model.save(handler);
  return { modelJson: path.join(path.resolve(dir), MODEL_JSON), weightBytes: result.modelArtifactsInfo.weightDataBytes ?? 0, metadata };
}

/**
 * Loads a LayersModel from a directory, a model.json path, a `file://` URL or an http(s) URL,
 * with drover's metadata when present. Layers the metadata lists for inference mode are pinned
 * again, so a reloaded transfer model trains as the original did.
 */
export async function loadModel(location: string, options: UrlLoadOptions = {}): Promise<LoadedModel> {
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(modelHandler(location, options));
  } catch (cause) {
    if (cause instanceof DroverError) throw cause;
    throw new ModelError(`cannot build the model saved at ${location}: ${(cause as Error).message}`, { cause });
  }
  try {
    const metadata = readMetadata(model, location);
    if (metadata) pinLayersByName(model, metadata.inferenceModeLayers, location);
    return { model, classNames: metadata?.classNames, metadata };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** drover's metadata of a loaded model, validated; undefined when it has none. */
export function readMetadata(model: tf.LayersModel, location: string): ModelMetadata | undefined {
  const raw = (model.getUserDefinedMetadata() as Record<string, unknown> | undefined)?.[DROVER_METADATA_KEY];
  if (raw === undefined) return undefined;
  const parsed = modelMetadataSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ModelFileError(
      `${location}: userDefinedMetadata.${DROVER_METADATA_KEY}.${issue.path.join('.')}: ${issue.message}`,
      location,
      'malformed-model-json',
    );
  }
  const outputs = outputWidth(model);
  if (outputs !== undefined && parsed.data.classNames.length !== outputs) {
    throw new ModelFileError(
      `${location}: metadata names ${parsed.data.classNames.length} classes but the model has ${outputs} outputs`,
      location,
      'malformed-model-json',
    );
  }
  return parsed.data;
}

function buildMetadata(model: tf.LayersModel, options: SaveModelOptions): ModelMetadata {
  const { classNames } = options;
  if (!Array.isArray(classNames) || classNames.some((name) => typeof name !== 'string' || name.length === 0)) {
    throw new ModelError('options.classNames must be a list of non-empty strings');
  }
  const duplicate = classNames.find((name, i) => classNames.indexOf(name) !== i);
  if (duplicate !== undefined) throw new ModelError(`options.classNames: "${duplicate}" appears twice`);
  const outputs = outputWidth(model);
  if (outputs !== undefined && classNames.length !== outputs) {
    throw new ModelError(`options.classNames has ${classNames.length} names but the model ${model.name} has ${outputs} outputs`);
  }
  const preprocess = preprocessSpecSchema.safeParse(options.preprocess ?? 'rescale');
  if (!preprocess.success) throw new ModelError(`options.preprocess: ${preprocess.error.issues[0]!.message}`);
  const resize = resizeModeSchema.safeParse(options.resize ?? 'cover');
  if (!resize.success) throw new ModelError(`options.resize: ${resize.error.issues[0]!.message}`);
  const inputShape = model.inputs[0]?.shape.slice(1);
  const metadata: ModelMetadata = {
    formatVersion: MODEL_METADATA_VERSION,
    classNames: [...classNames],
    preprocess: preprocess.data,
    resize: resize.data,
    inferenceModeLayers: pinnedLayerNames(model),
  };
  if (inputShape?.length === 3 && inputShape.every((d): d is number => typeof d === 'number')) {
    metadata.inputShape = inputShape as [number, number, number];
  }
  if (options.info !== undefined) metadata.info = options.info;
  return metadata;
}

/** Width of the (single) output, when the model ends in [batch, classes]. */
function outputWidth(model: tf.LayersModel): number | undefined {
  const shape = model.outputs[0]?.shape;
  return shape?.length === 2 && typeof shape[1] === 'number' ? shape[1] : undefined;
}
