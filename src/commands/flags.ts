import { InvalidArgumentError, Option } from 'commander';
import { BACKEND_CHOICES } from '../model/backend.ts';

/** Parsers and options that several commands share, so a flag reads the same everywhere. */

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got "${value}"`);
  return n;
}

export function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port number 0-65535, got "${value}"`);
  return n;
}

/** `--backend <name>`: a new Option each call (commander owns an option once it is added). */
export function backendOption(): Option {
  return new Option('--backend <name>', 'compute backend (auto: tfjs-node-gpu on a CUDA GPU, else a hardware WebGPU adapter, else tfjs-node, else wasm with the oneDNN kernels where built; cpu: pure JS, ~1 img/s, checks only)')
    .choices(BACKEND_CHOICES as unknown as string[]);
}
