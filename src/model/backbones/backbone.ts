/**
 * A pretrained feature extractor: a LayersModel from a path, URL or bundled package, cut at a
 * layer, built for the job's input size.
 */
import * as tf from '@tensorflow/tfjs';
import { DroverError, ModelError } from '../../errors.ts';
import type { PreprocessSpec } from '../../data/spec.ts';
import type { InputShape } from '../../data/types.ts';
import type { UrlLoadOptions } from '../file-io.ts';
import { readModelArtifacts } from '../file-io.ts';
import { DROVER_METADATA_KEY, modelMetadataSchema } from '../export.ts';
import { NSFWJS_PREFIX, nsfwjsBackbone } from './nsfwjs.ts';
import { cutAtLayer, declaredInputShape, withInputShape } from './cut.ts';

export interface BackboneOptions {
  /** Layer whose output becomes the features; default: the bundled backbone's feature layer, else the model's output. */
  cutAt?: string;
  /** Build for this [height, width, channels] instead of the size the model declares. */
  inputShape?: InputShape;
  url?: UrlLoadOptions;
}

export interface Backbone {
  /** input -> features (the cut layer's output). */
  model: tf.LayersModel;
  source: string;
  /** The layer the model was cut at; undefined when kept whole. */
  cutAt: string | undefined;
  /** The preprocessing the backbone was trained with, when known (bundled, or drover metadata). */
  preprocess: PreprocessSpec | undefined;
}

/**
 * Loads a backbone: `nsfwjs:<variant>`, a directory, a model.json, or an http(s) URL. The
 * topology is cut and resized before anything is built, so layers after the cut never load.
 */
export async function loadBackbone(source: string, options: BackboneOptions = {}): Promise<Backbone> {
  let artifacts: tf.io.ModelArtifacts;
  let preprocess: PreprocessSpec | undefined;
  let cutAt = options.cutAt;
  if (source.startsWith(NSFWJS_PREFIX)) {
    const bundled = await nsfwjsBackbone(source);
    artifacts = bundled.artifacts;
    preprocess = bundled.preprocess;
    cutAt ??= bundled.featureLayer;
  } else {
    artifacts = await readModelArtifacts(source, options.url);
    const metadata = modelMetadataSchema.safeParse(artifacts.userDefinedMetadata?.[DROVER_METADATA_KEY]);
    if (metadata.success) preprocess = metadata.data.preprocess;
  }
  if (cutAt !== undefined) artifacts = cutAtLayer(artifacts, cutAt, source);
  const declared = declaredInputShape(artifacts, source);
  const shape = options.inputShape;
  if (shape !== undefined && !(declared && declared.every((d, i) => d === null || d === shape[i]))) {
    artifacts = withInputShape(artifacts, shape, source);
  }
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (cause) {
    if (cause instanceof DroverError) throw cause;
    const size = shape ? ` at input ${shape.join('x')}` : '';
    throw new ModelError(`cannot build backbone ${source}${cutAt ? ` cut at ${cutAt}` : ''}${size}: ${(cause as Error).message}`, { cause });
  }
  return { model, source, cutAt, preprocess };
}
