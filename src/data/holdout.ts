/**
 * Seeded train / validation split by fraction, per class (stratified), so every class with at
 * least two samples appears on both sides and the split does not depend on file order.
 */
import { deriveSeed, Rng, shuffleInPlace } from './rng.ts';

export interface Holdout {
  /** Ascending sample indices of each side. */
  train: Uint32Array;
  validation: Uint32Array;
}

/** Splits indices 0..labels.length-1, taking round(fraction * count) of each class for validation. */
export function stratifiedHoldout(labels: ArrayLike<number>, fraction: number, seed: number): Holdout {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    let list = byClass.get(label);
    if (!list) byClass.set(label, (list = []));
    list.push(i);
  }
  const isValidation = new Uint8Array(labels.length);
  for (const [label, list] of byClass) {
    shuffleInPlace(list, new Rng(deriveSeed(seed, label, 0x4e1d)));
    let take = Math.round(fraction * list.length);
    // Keep at least one sample per class for training.
    if (take >= list.length) take = list.length - 1;
    for (let k = 0; k < take; k++) isValidation[list[k]!] = 1;
  }
  let v = 0;
  for (let i = 0; i < isValidation.length; i++) v += isValidation[i]!;
  const train = new Uint32Array(labels.length - v);
  const validation = new Uint32Array(v);
  for (let i = 0, t = 0, w = 0; i < isValidation.length; i++) {
    if (isValidation[i]) validation[w++] = i;
    else train[t++] = i;
  }
  return { train, validation };
}
