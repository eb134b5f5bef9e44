/**
 * Pretrained Keras backbones bundled in the `nsfwjs` npm package (MIT): its LayersModels ship
 * as UMD modules, one exporting the model.json object and one per weight shard exporting the
 * shard's bytes as base64. Loading them needs no network and no files of drover's own.
 */
import type * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../errors.ts';
import type { PreprocessSpec } from '../../data/spec.ts';

/** What nsfwjs exports per model from `nsfwjs/models/<variant>`. */
interface NsfwjsModelDefinition {
  numOfWeightBundles: number;
  modelJson: () => Promise<{ default: unknown }>;
  weightBundles: Array<() => Promise<{ default: unknown }>>;
}

/** A pretrained backbone: its artifacts and how it expects its input. */
export interface BundledBackbone {
  name: string;
  artifacts: tf.io.ModelArtifacts;
  /** How pixels (0..255) were scaled when the backbone was trained. */
  preprocess: PreprocessSpec;
  /** The last feature layer before the bundled classifier head: the usual cut point. */
  featureLayer: string;
}

interface VariantInfo {
  exportName: string;
  featureLayer: string;
}

/**
 * Only the Keras LayersModels: nsfwjs' `mobilenet_v2_mid` is a graph model (no layers to cut).
 * Both take any input size their convolutions allow (224x224 / 299x299 as trained); nsfwjs
 * feeds them pixels / 255.
 */
const VARIANTS: Record<string, VariantInfo> = {
  mobilenet_v2: { exportName: 'MobileNetV2Model', featureLayer: 'out_relu' },
  inception_v3: { exportName: 'InceptionV3Model', featureLayer: 'mixed10' },
};

export const NSFWJS_PREFIX = 'nsfwjs:';
export const NSFWJS_VARIANTS = Object.keys(VARIANTS);

/** Imports a module by specifier; a parameter so a missing package can be exercised. */
export type ModuleImporter = (specifier: string) => Promise<Record<string, unknown>>;
const defaultImporter: ModuleImporter = (specifier) => import(specifier) as Promise<Record<string, unknown>>;

/**
 * Loads `nsfwjs:<variant>` (e.g. `nsfwjs:mobilenet_v2`) as tfjs artifacts. Rejects with a
 * ModelError when the variant is unknown or the nsfwjs package is not installed.
 */
export async function nsfwjsBackbone(source: string, importer: ModuleImporter = defaultImporter): Promise<BundledBackbone> {
  const variant = source.startsWith(NSFWJS_PREFIX) ? source.slice(NSFWJS_PREFIX.length) : source;
  const info = VARIANTS[variant];
  if (!info) {
    throw new ModelError(`unknown nsfwjs backbone "${variant}": expected one of ${NSFWJS_VARIANTS.map((v) => NSFWJS_PREFIX + v).join(', ')}`);
  }
  const specifier = `nsfwjs/models/${variant}`;
  let module: Record<string, unknown>;
  try {
    module = await importer(specifier);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' || code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') {
      throw new ModelError(
        `backbone "${NSFWJS_PREFIX}${variant}" needs the nsfwjs package, which is not installed: run \`npm install nsfwjs\` (or give the backbone as a path or URL)`,
        { cause },
      );
    }
    throw new ModelError(`cannot load ${specifier}: ${(cause as Error).message}`, { cause });
  }
  const definition = module[info.exportName] as NsfwjsModelDefinition | undefined;
  if (!definition || typeof definition.modelJson !== 'function' || !Array.isArray(definition.weightBundles)) {
    throw new ModelError(`${specifier} does not export ${info.exportName} as nsfwjs 4 does; this nsfwjs version is not supported`);
  }
  const modelJson = (await definition.modelJson()).default as tf.io.ModelJSON;
  // The bundles hold the shards in manifest order (group1-shard1ofN, ...), as base64 strings.
  const shards = await Promise.all(definition.weightBundles.map(async (bundle) => (await bundle()).default));
  const paths = modelJson.weightsManifest.flatMap((group) => group.paths);
  if (shards.length !== paths.length || !shards.every((s): s is string => typeof s === 'string')) {
    throw new ModelError(`${specifier}: expected ${paths.length} base64 weight bundles, got ${shards.length}`);
  }
  const bytes = Buffer.concat(shards.map((s) => Buffer.from(s, 'base64')));
  return {
    name: `${NSFWJS_PREFIX}${variant}`,
    artifacts: {
      modelTopology: modelJson.modelTopology,
      format: 'layers-model',
      weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    },
    preprocess: 'rescale',
    featureLayer: info.featureLayer,
  };
}
