import { WeightsError } from '../errors.ts';
import type { WeightEntry } from '../model/weights.ts';
import type { ReceivedTensor } from '../wire/transfer.ts';

/**
 * One weight broadcast as a replica applies it. A full update holds every weight; a partial one
 * (base set) only the weights a step can change, named, in model order: the rest stay as in
 * version `base`, which the replica must hold from a full update.
 */
export interface WeightUpdate {
  version: number;
  tensors: readonly ReceivedTensor[];
  /** Set for a partial update: the version it applies on top of. */
  base?: number;
}

/**
 * Where each tensor of an update goes: its index in the replica's manifest. Refuses (WeightsError)
 * anything that does not fit: a full update must match the manifest exactly; a partial one needs
 * the replica at its base version, known names in model order, each at its shape, and every
 * trainable weight (a step always changes them).
 */
export function placeWeightUpdate(manifest: readonly WeightEntry[], held: number | undefined, update: WeightUpdate): number[] {
  if (update.base === undefined) {
    checkBroadcast(manifest, update.tensors);
    return manifest.map((_, i) => i);
  }
  const what = `partial weight broadcast v${update.version} (on top of v${update.base})`;
  if (held === undefined) throw new WeightsError(`${what} before any full one: this replica holds no weights to update`);
  if (held !== update.base) throw new WeightsError(`${what}: this replica holds v${held}`);
  const index = new Map(manifest.map((entry, i) => [entry.name, i]));
  const placed: number[] = [];
  update.tensors.forEach((t, k) => {
    const i = index.get(t.name);
    if (i === undefined) throw new WeightsError(`${what}[${k}] is ${t.name}: this replica has no weight of that name`);
    if (placed.length > 0 && i <= placed[placed.length - 1]!) throw new WeightsError(`${what}[${k}] ${t.name} is out of model order or repeated`);
    checkTensor(manifest[i]!, t, `${what}[${k}]`);
    placed.push(i);
  });
  const missing = manifest.filter((entry, i) => entry.trainable && !placed.includes(i));
  if (missing.length > 0) throw new WeightsError(`${what} lacks trainable weight(s) ${missing.slice(0, 3).map((w) => w.name).join(', ')}${missing.length > 3 ? ', ...' : ''}`);
  return placed;
}

/** Checks a full broadcast against the expected manifest: the coordinator and this worker must build the same model. */
export function checkBroadcast(manifest: readonly WeightEntry[], tensors: readonly ReceivedTensor[]): void {
  if (tensors.length !== manifest.length) throw new WeightsError(`weight broadcast holds ${tensors.length} tensors, this replica has ${manifest.length} weights`);
  manifest.forEach((entry, i) => checkTensor(entry, tensors[i]!, `weight broadcast[${i}]`));
}

function checkTensor(entry: WeightEntry, t: ReceivedTensor, what: string): void {
  if (t.name !== entry.name || t.dtype !== 'float32' || t.shape.join('x') !== entry.shape.join('x')) {
    throw new WeightsError(`${what} is ${t.name} [${t.shape}] ${t.dtype}, this replica expects ${entry.name} [${entry.shape}] float32`);
  }
}
