import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeToolchainPresent } from './toolchain.ts';

/**
 * The optional oneDNN addon (native/, built at install by native/build.mjs). Every compute entry
 * point reads and writes Float32Array views of the wasm heap in place; `sizes` is an Int32Array
 * whose layout each kernel file documents (it mirrors native/src/addon.cc).
 */
export interface OnednnAddon {
  conv2dForward(x: Float32Array, filter: Float32Array, bias: Float32Array | null, out: Float32Array, sizes: Int32Array, alpha: number): void;
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, sizes: Int32Array): void;
  poolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  /** sizes: [outer, inner, leading]: x as [outer, inner] summed over rows (leading 1) or columns, times scale. */
  sum(x: Float32Array, out: Float32Array, sizes: Int32Array, scale: number): void;
  /** sizes: [outer, channels]: per-channel (x - mean) * scale / sqrt(variance + epsilon) + offset. */
  batchNorm(
    x: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    offset: Float32Array | null,
    scale: Float32Array | null,
    out: Float32Array,
    sizes: Int32Array,
    epsilon: number,
  ): void;
  /** sizes: [outer, inner]: out[i, j] = x[i, j] + bias[j]. */
  biasAdd(x: Float32Array, bias: Float32Array, out: Float32Array, sizes: Int32Array): void;
  /**
   * One optimizer update pass (src/model/update-kernels.ts): params = [rule code, lr, a, b,
   * epsilon]. Absent in addons built before it existed.
   */
  fusedUpdate?(
    w: Float32Array,
    g: Float32Array,
    s1: Float32Array | null,
    s2: Float32Array | null,
    w2: Float32Array,
    t1: Float32Array | null,
    t2: Float32Array | null,
    params: Float64Array,
  ): void;
  matMul(a: Float32Array, b: Float32Array, bias: Float32Array | null, out: Float32Array, sizes: Int32Array, alpha: number): void;
  setThreads(threads: number): void;
  /** e.g. 'oneDNN 2.6.0 (OpenMP, 2 threads)'. */
  info(): string;
  clearCache(): void;
}

export type AddonLoad =
  | { addon: OnednnAddon; reason?: undefined; broken?: undefined }
  | {
      addon: undefined;
      reason: string;
      /**
       * True when the kernels should be here and are not: the addon fails to load, or it is
       * missing where the toolchain to build it is present (an interrupted install). Worth a
       * loud warning: pure wasm trains ~3x slower. False when they were turned off or cannot
       * be built here (the documented optional path).
       */
      broken: boolean;
    };

const nativeDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'native');
/** Where native/build.mjs puts the addon. */
export const ADDON_PATH = path.join(nativeDir, 'build', 'Release', 'drover_onednn.node');
const require = createRequire(import.meta.url);

let loaded: AddonLoad | undefined;

/**
 * Loads the addon once per process, or says why it is off: DROVER_NATIVE=off, not built (with
 * the reason the install step recorded), or a load failure (e.g. libdnnl removed since).
 */
export function loadOnednnAddon(): AddonLoad {
  loaded ??= tryLoad();
  return loaded;
}

function tryLoad(): AddonLoad {
  if (process.env['DROVER_NATIVE'] === 'off') return { addon: undefined, reason: 'disabled by DROVER_NATIVE=off', broken: false };
  if (!fs.existsSync(ADDON_PATH)) {
    const skippedFile = path.join(nativeDir, 'build', 'skipped.txt');
    const why = fs.existsSync(skippedFile) ? fs.readFileSync(skippedFile, 'utf8').trim() : 'the install step did not run or did not finish';
    return {
      addon: undefined,
      reason: `addon not built (${why}); see README, "Native kernels", then run \`node native/build.mjs\``,
      broken: nativeToolchainPresent(),
    };
  }
  // OpenMP's default busy-waiting between parallel regions starves everything else when the
  // cores are shared (measured: a conv 4x slower with 2 threads on a loaded 2-core machine).
  // libgomp reads this once, when the addon loads it.
  process.env['OMP_WAIT_POLICY'] ??= 'PASSIVE';
  try {
    return { addon: require(ADDON_PATH) as OnednnAddon };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { addon: undefined, reason: `addon failed to load (${message.split('\n')[0]!.slice(0, 200)}); rebuild with \`node native/build.mjs\``, broken: true };
  }
}
