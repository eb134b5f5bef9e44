/**
 * Surgery on a Keras / tfjs LayersModel topology (the JSON in model.json) before any layer is
 * built: cut the graph at a layer (dropping everything that does not feed it, and its weight
 * bytes) and give the input another size. Doing it on the JSON, not on a built model, means
 * layers after the cut never have to fit the new input size, and their weights never load.
 */
import type * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../errors.ts';
import type { InputShape } from '../../data/types.ts';
import { weightSpecBytes } from '../file-io.ts';

/** One layer entry of a Keras model config (Sequential entries may carry the name only in config). */
interface LayerConfig {
  name?: string;
  class_name: string;
  config: Record<string, unknown>;
  inbound_nodes?: unknown[];
}

/** The parts of a topology the surgery touches; anything else is carried over unchanged. */
interface GraphView {
  kind: 'functional' | 'sequential';
  layers: LayerConfig[];
  /** Replaces the layer list (and, for functional models, the outputs) in a copy of the topology. */
  rebuild(layers: LayerConfig[], output: string): Record<string, unknown>;
}

/**
 * Keeps only the layers the named layer depends on, makes that layer the model's output, and
 * drops the weights (specs and bytes) of every other layer. Unknown names are an error that
 * lists the nearest layer names.
 */
export function cutAtLayer(artifacts: tf.io.ModelArtifacts, layerName: string, source: string): tf.io.ModelArtifacts {
  const view = graphView(artifacts, source);
  const names = view.layers.map(layerNameOf);
  const index = names.indexOf(layerName);
  if (index < 0) throw unknownLayerError(layerName, names, `backbone ${source}`);
  let kept: LayerConfig[];
  if (view.kind === 'sequential') {
    kept = view.layers.slice(0, index + 1);
  } else {
    const byName = new Map(view.layers.map((layer) => [layerNameOf(layer), layer]));
    const needed = new Set<string>();
    const stack = [layerName];
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (needed.has(name)) continue;
      needed.add(name);
      const layer = byName.get(name);
      if (!layer) throw new ModelError(`backbone ${source}: a layer feeds from "${name}", which the topology does not define`);
      for (const inbound of inboundLayerNames(layer, source)) stack.push(inbound);
    }
    kept = view.layers.filter((layer) => needed.has(layerNameOf(layer)));
  }
  const keptNames = new Set(kept.map(layerNameOf));
  const { specs, data } = keepWeights(artifacts, (spec) => keptNames.has(ownerLayer(spec.name)), source);
  return { ...artifacts, modelTopology: view.rebuild(kept, layerName), weightSpecs: specs, weightData: data };
}

/**
 * Gives the model's single input another [height, width, channels]. Works for backbones whose
 * layers up to the cut do not depend on the spatial size (convolutions, pooling, BN).
 */
export function withInputShape(artifacts: tf.io.ModelArtifacts, shape: InputShape, source: string): tf.io.ModelArtifacts {
  const view = graphView(artifacts, source);
  const target =
    view.kind === 'sequential'
      ? view.layers[0]
      : (() => {
          const inputs = view.layers.filter((layer) => layer.class_name === 'InputLayer');
          if (inputs.length !== 1) throw new ModelError(`backbone ${source} has ${inputs.length} input layers; drover needs exactly one`);
          return inputs[0];
        })();
  if (!target) throw new ModelError(`backbone ${source} has no layers`);
  const current = target.config.batch_input_shape;
  if (!Array.isArray(current) || current.length !== 4) {
    throw new ModelError(`backbone ${source}: input layer ${layerNameOf(target)} has shape ${JSON.stringify(current)}, not [batch, height, width, channels]`);
  }
  if (current[3] !== null && current[3] !== shape[2]) {
    throw new ModelError(`backbone ${source} takes ${String(current[3])}-channel images; the input has ${shape[2]} channels`);
  }
  const patched = view.layers.map((layer) =>
    layer === target ? { ...layer, config: { ...layer.config, batch_input_shape: [null, shape[0], shape[1], shape[2]] } } : layer,
  );
  const output = view.kind === 'functional' ? currentOutput(artifacts) : layerNameOf(patched[patched.length - 1]!);
  return { ...artifacts, modelTopology: view.rebuild(patched, output) };
}

/** The [height, width, channels] a topology's input declares (nulls where it is free). */
export function declaredInputShape(artifacts: tf.io.ModelArtifacts, source: string): Array<number | null> | undefined {
  const view = graphView(artifacts, source);
  const target = view.kind === 'sequential' ? view.layers[0] : view.layers.find((layer) => layer.class_name === 'InputLayer');
  const shape = target?.config.batch_input_shape;
  return Array.isArray(shape) ? (shape.slice(1) as Array<number | null>) : undefined;
}

/** A ModelError for an unknown layer name that lists the closest names the model has. */
export function unknownLayerError(name: string, names: readonly string[], where: string): ModelError {
  const nearest = [...names]
    .map((candidate) => ({ candidate, distance: editDistance(name.toLowerCase(), candidate.toLowerCase()) }))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, 8)
    .map((entry) => entry.candidate);
  return new ModelError(`${where} has no layer "${name}"; nearest names: ${nearest.join(', ')} (${names.length} layers in all)`);
}

// ---------------------------------------------------------------- internals

function graphView(artifacts: tf.io.ModelArtifacts, source: string): GraphView {
  const topology = artifacts.modelTopology;
  if (!isRecord(topology)) throw new ModelError(`backbone ${source} has no JSON model topology (a graph model cannot be cut or trained)`);
  // Keras writes {model_config: {...}}; a bare {class_name, config} is accepted too.
  const wrapped = isRecord(topology.model_config);
  const modelConfig = (wrapped ? topology.model_config : topology) as Record<string, unknown>;
  const className = modelConfig.class_name;
  const config = modelConfig.config;
  const wrap = (newConfig: unknown): Record<string, unknown> => {
    const newModelConfig = { ...modelConfig, config: newConfig };
    return wrapped ? { ...topology, model_config: newModelConfig } : newModelConfig;
  };
  if (className === 'Sequential') {
    // Old Keras wrote a Sequential config as a bare layer list.
    const layers = (Array.isArray(config) ? config : isRecord(config) ? config.layers : undefined) as LayerConfig[] | undefined;
    if (!Array.isArray(layers)) throw new ModelError(`backbone ${source}: Sequential topology has no layer list`);
    return {
      kind: 'sequential',
      layers,
      rebuild: (newLayers) => wrap(Array.isArray(config) ? newLayers : { ...(config as object), layers: newLayers }),
    };
  }
  if ((className === 'Model' || className === 'Functional') && isRecord(config) && Array.isArray(config.layers)) {
    return {
      kind: 'functional',
      layers: config.layers as LayerConfig[],
      rebuild: (newLayers, output) => wrap({ ...config, layers: newLayers, output_layers: [[output, 0, 0]] }),
    };
  }
  throw new ModelError(`backbone ${source}: unsupported topology class ${JSON.stringify(className)} (expected a Keras Model, Functional or Sequential)`);
}

function layerNameOf(layer: LayerConfig): string {
  return typeof layer.name === 'string' ? layer.name : String(layer.config?.name);
}

function currentOutput(artifacts: tf.io.ModelArtifacts): string {
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const modelConfig = (isRecord(topology.model_config) ? topology.model_config : topology) as { config: { output_layers: unknown[][] } };
  return String(modelConfig.config.output_layers[0]![0]);
}

/** Names of the layers feeding a layer, from Keras' `inbound_nodes` ([[[name, node, tensor, kwargs], ...], ...]). */
function inboundLayerNames(layer: LayerConfig, source: string): string[] {
  const nodes = layer.inbound_nodes ?? [];
  const names: string[] = [];
  for (const node of nodes) {
    if (!Array.isArray(node)) throw new ModelError(`backbone ${source}: layer ${layerNameOf(layer)} has inbound nodes in a format drover cannot read (Keras 3?)`);
    for (const entry of node) {
      if (Array.isArray(entry) && typeof entry[0] === 'string') names.push(entry[0]);
    }
  }
  return names;
}

/** Keras names weights `<layer>/<weight>` (nested models: `<model>/<layer>/<weight>`). */
function ownerLayer(weightName: string): string {
  return weightName.split('/')[0]!;
}

/** The specs that pass `keep`, and their bytes copied out of the (possibly sharded) weight data. */
function keepWeights(
  artifacts: tf.io.ModelArtifacts,
  keep: (spec: tf.io.WeightsManifestEntry) => boolean,
  source: string,
): { specs: tf.io.WeightsManifestEntry[]; data: ArrayBuffer } {
  const all = artifacts.weightSpecs ?? [];
  const raw = artifacts.weightData;
  const bytes = raw === undefined ? new Uint8Array(0) : raw instanceof ArrayBuffer ? new Uint8Array(raw) : Buffer.concat(raw.map((b) => new Uint8Array(b)));
  const specs: tf.io.WeightsManifestEntry[] = [];
  const ranges: Array<[number, number]> = [];
  let offset = 0;
  for (const spec of all) {
    const size = weightSpecBytes(spec, source);
    if (keep(spec)) {
      specs.push(spec);
      ranges.push([offset, offset + size]);
    }
    offset += size;
  }
  if (offset !== bytes.byteLength) {
    throw new ModelError(`backbone ${source}: weight specs need ${offset} bytes, the weight data holds ${bytes.byteLength}`);
  }
  const out = new Uint8Array(ranges.reduce((sum, [start, end]) => sum + end - start, 0));
  let at = 0;
  for (const [start, end] of ranges) {
    out.set(bytes.subarray(start, end), at);
    at += end - start;
  }
  return { specs, data: out.buffer };
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
