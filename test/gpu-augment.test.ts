/**
 * The device augmentation path (src/data/gpu-augment.ts) against the CPU one (warp.ts), on
 * every backend that starts here: cpu and wasm always, webgpu where an adapter exists (a
 * software one on CI). Same affines and colour draws (augment.ts), same normalisation.
 */
import test, { type ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { drawAugment, NO_AUGMENT, sampleAffine, type AugmentConfig, type AugmentParams, type GeometryConfig } from '../src/data/augment.ts';
import { warpOnDevice, transformCoefficients, type DeviceSample, type DeviceWarpConfig } from '../src/data/gpu-augment.ts';
import { pixelMapFor, resolveNormalisation, type Normalisation } from '../src/data/pipeline-config.ts';
import { warpInto, type FillMode, type Interpolation, type PixelSource } from '../src/data/warp.ts';
import { initBackend } from '../src/model/backend.ts';
import { DatasetError } from '../src/errors.ts';
import sharp from 'sharp';
import { runBatchTask } from '../src/data/batch-task.ts';
import { runDecodeForDevice } from '../src/data/gpu-decode.ts';
import type { PipelineConfig } from '../src/data/pipeline-config.ts';

const OUT = 32;

/** A smooth colour image (interpolation differences stay small), channel c offset. */
function smoothImage(width: number, height: number, channels: number, phase: number): PixelSource {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        const v = 128 + 90 * Math.sin((x + phase) / 6 + c) * Math.cos((y - phase) / 7 - c);
        data[(y * width + x) * channels + c] = Math.round(v);
      }
    }
  }
  return { data, width, height, channels };
}

const AUGMENT: AugmentConfig = {
  rotation: 25,
  widthShift: 0.1,
  heightShift: 0.1,
  shear: 8,
  zoom: [0.8, 1.2],
  horizontalFlip: true,
  verticalFlip: false,
  brightness: [0.7, 1.3],
  channelShift: 30,
};

interface Case {
  fill: FillMode;
  interpolation: Interpolation;
  norm: Normalisation;
  channels: 1 | 3;
}

/** Both paths on one batch: [cpu path, device path] as flat arrays. */
async function both(c: Case, augment: boolean): Promise<{ cpu: Float32Array; device: Float32Array; samples: DeviceSample[] }> {
  const geometry: GeometryConfig = { width: OUT, height: OUT, resize: 'cover', fill: c.fill, fillValue: 40, interpolation: c.interpolation };
  // Two source sizes, so the device path groups and reorders.
  const images = [smoothImage(40, 48, c.channels, 0), smoothImage(37, 45, c.channels, 3), smoothImage(40, 48, c.channels, 5), smoothImage(50, 50, c.channels, 9)];
  const size = OUT * OUT * c.channels;
  const cpu = new Float32Array(images.length * size);
  const samples: DeviceSample[] = images.map((image, i) => {
    const params: AugmentParams = augment ? drawAugment(AUGMENT, 1000 + i, OUT, OUT) : NO_AUGMENT;
    const affine = sampleAffine(params, geometry, image.width, image.height);
    warpInto(image, affine, cpu, i * size, OUT, OUT, { fill: c.fill, fillValue: 40, interpolation: c.interpolation }, pixelMapFor(c.norm, params, c.channels));
    return { image, affine, colour: { brightness: params.brightness, channelShift: params.channelShift } };
  });
  const config: DeviceWarpConfig = { width: OUT, height: OUT, channels: c.channels, fill: c.fill, fillValue: 40, interpolation: c.interpolation, normalisation: c.norm };
  const out = warpOnDevice(samples, config);
  const device = (await out.data()) as Float32Array;
  out.dispose();
  return { cpu, device, samples };
}

/** Differences in pixel units (0..255): normalisation undone per output slot. */
function pixelDiffs(cpu: Float32Array, device: Float32Array, norm: Normalisation, channels: number): Float64Array {
  const diffs = new Float64Array(cpu.length);
  for (let i = 0; i < cpu.length; i++) diffs[i] = Math.abs(cpu[i]! - device[i]!) / norm.scale[i % channels]!;
  return diffs;
}

const backends: { name: string; start: () => Promise<unknown> }[] = [
  { name: 'cpu', start: () => initBackend('cpu') },
  { name: 'wasm', start: () => initBackend('wasm') },
  { name: 'webgpu', start: () => initBackend('webgpu', undefined, { allowSoftware: true }) },
];

/**
 * Starts the backend; false when it is webgpu and no adapter can be had here (logged, the test
 * passes as a said skip). Any other backend failing to start fails the test.
 */
async function started(t: ExecutionContext, backend: (typeof backends)[number]): Promise<boolean> {
  try {
    await backend.start();
    return true;
  } catch (err) {
    // Only webgpu may be missing (no adapter, no Vulkan driver): said, not hidden.
    if (backend.name !== 'webgpu') throw err;
    t.log(`webgpu unavailable here, skipped: ${(err as Error).message}`);
    t.pass();
    return false;
  }
}

const cases: Case[] = [
  { fill: 'constant', interpolation: 'bilinear', norm: resolveNormalisation('torch', 3), channels: 3 },
  { fill: 'nearest', interpolation: 'bilinear', norm: resolveNormalisation('rescale', 3), channels: 3 },
  { fill: 'reflect', interpolation: 'bilinear', norm: resolveNormalisation('caffe', 3), channels: 3 },
  { fill: 'constant', interpolation: 'nearest', norm: resolveNormalisation('mobilenet', 3), channels: 3 },
  { fill: 'reflect', interpolation: 'bilinear', norm: resolveNormalisation('rescale', 1), channels: 1 },
];

for (const backend of backends) {
  // tfjs-backend-wasm 4.22's Transform folds 'reflect' differently from TF, cpu and webgpu
  // (measured: mean 2, p99 60 pixel units): the device path is for webgpu; wasm trains with
  // the CPU pool path, so its reflect cases are left out rather than loosened.
  for (const c of cases.filter((k) => !(backend.name === 'wasm' && k.fill === 'reflect'))) {
    test.serial(`${backend.name}: ${c.channels}-channel ${c.interpolation} warp, fill ${c.fill}, colour draws and normalisation match the CPU path`, async (t) => {
      if (!(await started(t, backend))) return;
      const before = tf.memory().numTensors;
      const { cpu, device } = await both(c, true);
      t.is(tf.memory().numTensors, before, 'no tensor leaks');
      t.is(device.length, cpu.length);
      const diffs = pixelDiffs(cpu, device, c.norm, c.channels);
      const sorted = Float64Array.from(diffs).sort();
      const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
      const p99 = sorted[Math.floor(0.99 * sorted.length)]!;
      t.log(`pixel-unit |cpu - device|: mean ${mean.toFixed(3)}, p99 ${p99.toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)}`);
      if (c.interpolation === 'bilinear') {
        // 8-bit weights and 16.16 coordinates on the CPU path: ~1 pixel unit on these gradients.
        t.true(mean < 0.5, `mean ${mean}`);
        t.true(p99 < 3, `p99 ${p99}`);
      } else {
        // Nearest: a coordinate on a rounding boundary may pick the neighbour pixel; rare.
        const picked = diffs.filter((d) => d > 1).length / diffs.length;
        t.true(picked < 0.02, `${(100 * picked).toFixed(2)}% of values took another pixel`);
      }
    });
  }

  test.serial(`${backend.name}: without augmentation, a same-size image comes back as is (identity map, exact)`, async (t) => {
    if (!(await started(t, backend))) return;
    const image = smoothImage(OUT, OUT, 3, 1);
    const geometry: GeometryConfig = { width: OUT, height: OUT, resize: 'cover', fill: 'constant', fillValue: 0, interpolation: 'bilinear' };
    const affine = sampleAffine(NO_AUGMENT, geometry, OUT, OUT);
    const norm = resolveNormalisation('none', 3);
    const out = warpOnDevice([{ image, affine, colour: { brightness: 1, channelShift: 0 } }], { width: OUT, height: OUT, channels: 3, fill: 'constant', fillValue: 0, interpolation: 'bilinear', normalisation: norm });
    const values = await out.data();
    out.dispose();
    t.deepEqual(Array.from(values), Array.from(image.data));
  });
}

test.serial('the drawn affines reach outside the sources: the fill mode changes the output', async (t) => {
  await initBackend('cpu');
  const norm = resolveNormalisation('rescale', 3);
  const constant = await both({ fill: 'constant', interpolation: 'bilinear', norm, channels: 3 }, true);
  const reflect = await both({ fill: 'reflect', interpolation: 'bilinear', norm, channels: 3 }, true);
  const changed = constant.device.filter((v, i) => Math.abs(v - reflect.device[i]!) > 2 / 255).length / constant.device.length;
  t.log(`${(100 * changed).toFixed(1)}% of values depend on the fill mode`);
  t.true(changed > 0.02);
});

test.serial('decode on sharp + warp on the device matches the pool task (decode + warp on the CPU), bad samples skipped alike', async (t) => {
  await initBackend('cpu');
  const jpeg = async (phase: number, width: number, height: number): Promise<Uint8Array> => {
    const image = smoothImage(width, height, 3, phase);
    return sharp(image.data, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  };
  const pipeline: PipelineConfig = {
    geometry: { width: OUT, height: OUT, resize: 'cover', fill: 'reflect', fillValue: 0, interpolation: 'bilinear' },
    channels: 3,
    augment: AUGMENT,
    normalisation: resolveNormalisation('torch', 3),
    maxInputPixels: 1e7,
    maxFileBytes: 1e7,
  };
  const samples = [{ bytes: await jpeg(0, 60, 40) }, { bytes: new Uint8Array([1, 2, 3]) }, { bytes: await jpeg(4, 41, 52) }];
  const task = { samples, seeds: [11, 12, 13], pipeline };
  const reference = await runBatchTask(task);
  const decoded = await runDecodeForDevice(task);
  t.deepEqual(decoded.failures.map((f) => [f.index, f.reason]), reference.failures.map((f) => [f.index, f.reason]));
  t.is(decoded.samples[1], null);
  const kept = decoded.samples.filter((s): s is DeviceSample => s !== null);
  const before = tf.memory().numTensors;
  const out = warpOnDevice(kept, { ...pipeline.geometry, channels: 3, normalisation: pipeline.normalisation });
  const device = (await out.data()) as Float32Array;
  out.dispose();
  t.is(tf.memory().numTensors, before);
  const size = OUT * OUT * 3;
  const cpu = new Float32Array([...reference.x!.subarray(0, size), ...reference.x!.subarray(2 * size, 3 * size)]);
  const diffs = pixelDiffs(cpu, device, pipeline.normalisation, 3);
  const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
  t.log(`pixel-unit |pool - device|: mean ${mean.toFixed(3)}, max ${Math.max(...diffs).toFixed(2)}`);
  t.true(mean < 0.5);
});

test('transformCoefficients maps pixel indices as warp.ts maps pixel centres', (t) => {
  const m = { a: 0.9, b: -0.2, c: 5, d: 0.3, e: 1.1, f: -2 };
  const [a0, a1, a2, b0, b1, b2, c0, c1] = transformCoefficients(m);
  t.deepEqual([c0, c1], [0, 0]);
  for (const [x, y] of [[0, 0], [7, 3], [31, 31]] as const) {
    // warp.ts: source sample point = affine(x + 0.5, y + 0.5) - 0.5
    const u = m.a * (x + 0.5) + m.b * (y + 0.5) + m.c - 0.5;
    const v = m.d * (x + 0.5) + m.e * (y + 0.5) + m.f - 0.5;
    t.true(Math.abs(a0! * x + a1! * y + a2! - u) < 1e-9);
    t.true(Math.abs(b0! * x + b1! * y + b2! - v) < 1e-9);
  }
});

test('warpOnDevice rejects an empty batch, a channel mismatch and short pixel data with a DatasetError', async (t) => {
  await initBackend('cpu');
  const config: DeviceWarpConfig = { width: 8, height: 8, channels: 3, fill: 'constant', fillValue: 0, interpolation: 'bilinear', normalisation: resolveNormalisation('rescale', 3) };
  const affine = { a: 1, b: 0, c: 0, d: 0, e: 1, f: 0 };
  const colour = { brightness: 1, channelShift: 0 };
  t.throws(() => warpOnDevice([], config), { instanceOf: DatasetError });
  t.throws(() => warpOnDevice([{ image: smoothImage(8, 8, 1, 0), affine, colour }], config), { instanceOf: DatasetError, message: /1 channels/ });
  t.throws(() => warpOnDevice([{ image: { data: new Uint8Array(10), width: 8, height: 8, channels: 3 }, affine, colour }], config), { instanceOf: DatasetError, message: /10 bytes/ });
});
