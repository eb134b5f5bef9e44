/**
 * Reads and writes tfjs LayersModel artifacts (`model.json` + weight shards) in a directory
 * or, read-only, at an http(s) URL. Plain @tensorflow/tfjs has no `file://` handler in Node
 * (that one lives in tfjs-node); this is drover's, with errors that name the file at fault.
 */
import * as tf from '@tensorflow/tfjs';
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError, ModelFileError } from '../errors.ts';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

/** tfjs' own JSON format name for a LayersModel. */
const LAYERS_MODEL_FORMAT = 'layers-model';
const GENERATED_BY = `TensorFlow.js tfjs-layers v${tf.version_layers}`;
const DEFAULT_FETCH_TIMEOUT_MS = 60_000;

export interface DirectorySaveOptions {
  /**
   * Largest weight file in bytes. Absent: one `weights.bin`. Set: `group1-shard1ofN.bin`, ...
   * as tfjs' converter writes them (some static hosts cap file sizes).
   */
  shardBytes?: number;
}

export interface UrlLoadOptions {
  /** Per request; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** True for http(s) URLs; `file://` URLs count as local paths. */
export function isHttpUrl(location: string): boolean {
  return /^https?:\/\//i.test(location);
}

/**
 * The handler for a location: an http(s) URL (of a model.json, or of the folder holding one),
 * a `file://` URL, a directory, or a path to a model.json file.
 */
export function modelHandler(location: string, options: UrlLoadOptions = {}): tf.io.IOHandler {
  if (isHttpUrl(location)) return urlHandler(location, options);
  return directoryHandler(location.startsWith('file://') ? fileURLToPath(location) : location);
}

/** Reads the artifacts (topology, weight specs, weight bytes, metadata) at a location. */
export async function readModelArtifacts(location: string, options: UrlLoadOptions = {}): Promise<tf.io.ModelArtifacts> {
  return modelHandler(location, options).load!();
}

/**
 * A handler for a directory. `save` writes `model.json` and the weight file(s), each through
 * a temporary file renamed into place, model.json last: a reader never sees a truncated file,
 * and the old model.json stays valid until the new weights are complete. `load` also accepts
 * the path of a model.json itself (its weights are looked up beside it).
 */
export function directoryHandler(location: string, options: DirectorySaveOptions = {}): tf.io.IOHandler {
  const shardBytes = options.shardBytes;
  if (shardBytes !== undefined && !(Number.isInteger(shardBytes) && shardBytes > 0)) {
    throw new ModelError(`options.shardBytes must be a positive integer, got ${String(shardBytes)}`);
  }
  return {
    save: (artifacts) => saveToDirectory(location, artifacts, shardBytes),
    load: () => loadFromDirectory(location),
  };
}

/** A load-only handler for a model.json served over http(s), using the global fetch. */
export function urlHandler(url: string, options: UrlLoadOptions = {}): tf.io.IOHandler {
  return { load: () => loadFromUrl(url, options) };
}

// ---------------------------------------------------------------- saving

async function saveToDirectory(dir: string, artifacts: tf.io.ModelArtifacts, shardBytes: number | undefined): Promise<tf.io.SaveResult> {
  if (artifacts.modelTopology instanceof ArrayBuffer) {
    throw new ModelError(`cannot save a graph model (binary topology) to ${dir}: only LayersModels are supported`);
  }
  const existing = await stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory()) {
    throw new ModelFileError(`cannot save a model to ${dir}: it exists and is not a directory`, dir, 'write');
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new ModelFileError(`cannot create model directory ${dir}: ${(cause as Error).message}`, dir, 'write', { cause });
  }
  const data = weightBytes(artifacts.weightData);
  const shards = splitShards(data, shardBytes);
  const names = shards.length === 1 && shardBytes === undefined ? [WEIGHTS_BIN] : shards.map((_, i) => `group1-shard${i + 1}of${shards.length}.bin`);
  const modelJson: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology ?? {},
    weightsManifest: [{ paths: names, weights: artifacts.weightSpecs ?? [] }],
    format: artifacts.format ?? LAYERS_MODEL_FORMAT,
    generatedBy: artifacts.generatedBy ?? GENERATED_BY,
    convertedBy: artifacts.convertedBy ?? null,
  };
  if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
  if (artifacts.userDefinedMetadata != null) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
  const previous = await previousWeightFiles(dir);
  for (let i = 0; i < shards.length; i++) await writeFileAtomic(path.join(dir, names[i]!), shards[i]!);
  // model.json last: it is what makes the new weights visible.
  await writeFileAtomic(path.join(dir, MODEL_JSON), Buffer.from(JSON.stringify(modelJson)));
  // Shards of the replaced model that the new one does not reuse (e.g. 3 shards -> 1 file).
  for (const name of previous) {
    if (!names.includes(name)) await unlink(path.join(dir, name)).catch(() => undefined);
  }
  return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
}

/** Weight files named by a model.json already in `dir` (plain names inside it only); none if unreadable. */
async function previousWeightFiles(dir: string): Promise<string[]> {
  try {
    const json = JSON.parse(await readFile(path.join(dir, MODEL_JSON), 'utf8')) as { weightsManifest?: Array<{ paths?: unknown }> };
    return (json.weightsManifest ?? [])
      .flatMap((group) => (Array.isArray(group.paths) ? group.paths : []))
      .filter((name): name is string => typeof name === 'string' && name === path.basename(name) && name !== MODEL_JSON);
  } catch {
    return [];
  }
}

function weightBytes(data: tf.io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return Buffer.concat(data.map((buffer) => new Uint8Array(buffer)));
}

function splitShards(data: Uint8Array, shardBytes: number | undefined): Uint8Array[] {
  if (shardBytes === undefined || data.byteLength <= shardBytes) return [data];
  const shards: Uint8Array[] = [];
  for (let offset = 0; offset < data.byteLength; offset += shardBytes) shards.push(data.subarray(offset, offset + shardBytes));
  return shards;
}

/** Temp file in the same directory, flushed, then renamed over the target (atomic on POSIX). */
async function writeFileAtomic(file: string, data: Uint8Array): Promise<void> {
  const temp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (cause) {
    await unlink(temp).catch(() => undefined);
    throw new ModelFileError(`cannot write ${file}: ${(cause as Error).message}`, file, 'write', { cause });
  }
}

// ---------------------------------------------------------------- loading

/** Where model.json and its weight files come from: a directory or a URL. */
interface ArtifactSource {
  /** The model.json location, for messages. */
  readonly jsonLocation: string;
  readJson(): Promise<string>;
  /** The location of a weight file named in the manifest, for messages. */
  weightLocation(name: string): string;
  readWeights(name: string): Promise<Uint8Array>;
}

async function loadFromDirectory(location: string): Promise<tf.io.ModelArtifacts> {
  const jsonFile = await locateModelJson(location);
  const dir = path.dirname(jsonFile);
  const source: ArtifactSource = {
    jsonLocation: jsonFile,
    readJson: async () => {
      try {
        return await readFile(jsonFile, 'utf8');
      } catch (cause) {
        throw new ModelFileError(`cannot read ${jsonFile}: ${(cause as Error).message}`, jsonFile, 'missing-model-json', { cause });
      }
    },
    weightLocation: (name) => path.resolve(dir, name),
    readWeights: async (name) => {
      const file = path.resolve(dir, name);
      try {
        return await readFile(file);
      } catch (cause) {
        const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
        throw new ModelFileError(
          missing ? `weight file ${file} named in ${jsonFile} does not exist` : `cannot read weight file ${file}: ${(cause as Error).message}`,
          file,
          'missing-weights',
          { cause },
        );
      }
    },
  };
  return loadArtifacts(source, (name) => {
    // A manifest must not reach outside its own folder.
    const resolved = path.resolve(dir, name);
    return !path.isAbsolute(name) && resolved.startsWith(dir + path.sep);
  });
}

/** A directory holding model.json, or a model.json file; errors tell which part is missing. */
async function locateModelJson(location: string): Promise<string> {
  const absolute = path.resolve(location);
  const info = await stat(absolute).catch(() => undefined);
  if (info?.isDirectory()) {
    const jsonFile = path.join(absolute, MODEL_JSON);
    if (!(await stat(jsonFile).catch(() => undefined))?.isFile()) {
      throw new ModelFileError(`model directory ${absolute} has no ${MODEL_JSON} (${jsonFile} does not exist)`, jsonFile, 'missing-model-json');
    }
    return jsonFile;
  }
  if (info?.isFile()) return absolute;
  if (absolute.endsWith('.json')) {
    const parent = path.dirname(absolute);
    if ((await stat(parent).catch(() => undefined))?.isDirectory()) {
      throw new ModelFileError(`model file ${absolute} does not exist`, absolute, 'missing-model-json');
    }
    throw new ModelFileError(`model directory ${parent} does not exist`, parent, 'missing-dir');
  }
  throw new ModelFileError(`model directory ${absolute} does not exist`, absolute, 'missing-dir');
}

async function loadFromUrl(url: string, options: UrlLoadOptions): Promise<tf.io.ModelArtifacts> {
  const jsonUrl = modelJsonUrl(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const get = async (target: string, missing: 'missing-model-json' | 'missing-weights'): Promise<Response> => {
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
    let response: Response;
    try {
      response = await fetch(target, { signal: AbortSignal.any(signals) });
    } catch (cause) {
      throw new ModelFileError(`cannot fetch ${target}: ${(cause as Error).message}`, target, 'http', { cause });
    }
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel();
      throw new ModelFileError(`${target} not found (HTTP ${response.status})`, target, missing);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new ModelFileError(`fetching ${target} failed: HTTP ${response.status} ${response.statusText}`, target, 'http');
    }
    return response;
  };
  const source: ArtifactSource = {
    jsonLocation: jsonUrl,
    readJson: async () => (await get(jsonUrl, 'missing-model-json')).text(),
    weightLocation: (name) => new URL(name, jsonUrl).href,
    readWeights: async (name) => new Uint8Array(await (await get(new URL(name, jsonUrl).href, 'missing-weights')).arrayBuffer()),
  };
  const origin = new URL(jsonUrl).origin;
  return loadArtifacts(source, (name) => new URL(name, jsonUrl).origin === origin);
}

/** A URL of a model.json, or of the folder that serves one. */
function modelJsonUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.pathname.endsWith('.json')) return parsed.href;
  if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
  return new URL(MODEL_JSON, parsed).href;
}

/** Parses model.json, reads every weight group, and checks each group's byte size. */
async function loadArtifacts(source: ArtifactSource, allowedWeightPath: (name: string) => boolean): Promise<tf.io.ModelArtifacts> {
  const text = await source.readJson();
  const modelJson = parseModelJson(text, source.jsonLocation);
  const chunks: Uint8Array[] = [];
  const specs: tf.io.WeightsManifestEntry[] = [];
  for (const [groupIndex, group] of modelJson.weightsManifest.entries()) {
    const expected = group.weights.reduce((sum, spec) => sum + weightSpecBytes(spec, source.jsonLocation), 0);
    const parts: Uint8Array[] = [];
    for (const name of group.paths) {
      if (!allowedWeightPath(name)) {
        throw new ModelFileError(`${source.jsonLocation}: weight path "${name}" points outside the model's location`, source.jsonLocation, 'malformed-model-json');
      }
      parts.push(await source.readWeights(name));
    }
    const got = parts.reduce((sum, part) => sum + part.byteLength, 0);
    if (got !== expected) {
      const files = group.paths.map((name) => source.weightLocation(name));
      const where = files.length === 1 ? files[0]! : `${files.length} files ${files[0]} .. ${files[files.length - 1]}`;
      throw new ModelFileError(
        `weight group ${groupIndex + 1} of ${source.jsonLocation} (${where}) holds ${got} bytes, but its ${group.weights.length} weights need ${expected}` +
          (got < expected ? ': the file is short (truncated or from another model)' : ''),
        files[files.length - 1] ?? source.jsonLocation,
        'weights-size',
      );
    }
    chunks.push(...parts);
    specs.push(...group.weights);
  }
  const data = Buffer.concat(chunks);
  // An ArrayBuffer of exactly the weight bytes (a small Buffer may sit inside a shared pool).
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  return tf.io.getModelArtifactsForJSONSync(modelJson, specs, weightData);
}

function parseModelJson(text: string, location: string): tf.io.ModelJSON {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new ModelFileError(`${location} is not valid JSON: ${(cause as Error).message}`, location, 'malformed-model-json', { cause });
  }
  const bad = (what: string): ModelFileError => new ModelFileError(`${location} is not a tfjs model.json: ${what}`, location, 'malformed-model-json');
  if (!isRecord(parsed)) throw bad('expected a JSON object');
  if (!isRecord(parsed.modelTopology)) throw bad('modelTopology is missing or not an object');
  const manifest = parsed.weightsManifest ?? [];
  if (!Array.isArray(manifest)) throw bad('weightsManifest is not an array');
  manifest.forEach((group: unknown, i) => {
    if (!isRecord(group)) throw bad(`weightsManifest[${i}] is not an object`);
    if (!Array.isArray(group.paths) || !group.paths.every((p) => typeof p === 'string' && p.length > 0)) {
      throw bad(`weightsManifest[${i}].paths must be a list of file names`);
    }
    if (!Array.isArray(group.weights)) throw bad(`weightsManifest[${i}].weights must be a list`);
    group.weights.forEach((spec: unknown, j) => {
      if (!isRecord(spec) || typeof spec.name !== 'string' || !Array.isArray(spec.shape) || typeof spec.dtype !== 'string') {
        throw bad(`weightsManifest[${i}].weights[${j}] needs name, shape and dtype`);
      }
      if (!spec.shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
        throw bad(`weightsManifest[${i}].weights[${j}] (${spec.name}) has shape ${JSON.stringify(spec.shape)}`);
      }
    });
  });
  return { ...(parsed as unknown as tf.io.ModelJSON), weightsManifest: manifest as tf.io.WeightsManifestConfig };
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2 };

/** Bytes one weight takes in a shard: its quantised dtype if quantised, else its own. */
export function weightSpecBytes(spec: tf.io.WeightsManifestEntry, location = 'model.json'): number {
  const storedAs: string = spec.quantization?.dtype ?? spec.dtype;
  const bytes = DTYPE_BYTES[storedAs];
  if (bytes === undefined) {
    throw new ModelFileError(`${location}: weight ${spec.name} is stored as ${storedAs}, which drover cannot read`, location, 'malformed-model-json');
  }
  return spec.shape.reduce((a, b) => a * b, 1) * bytes;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
