import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import sharp from 'sharp';
import path from 'node:path';
import { evaluateModel, formatEvaluation } from '../src/commands/evaluate.ts';
import { resolveDataArgument } from '../src/data/data-argument.ts';
import { formatPredictions, predictImages, type ImagePrediction } from '../src/commands/predict.ts';
import { openDataset } from '../src/data/open.ts';
import { generateShapes } from '../src/data/shapes.ts';
import type { DataSplit } from '../src/data/types.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { saveModel } from '../src/model/export.ts';
import { directoryHandler } from '../src/model/file-io.ts';
import { evaluateSplit } from '../src/job/split-evaluation.ts';
import type { EvaluationMetrics as Evaluation } from '../src/job/step-engine.ts';
import { Trainer } from '../src/train/trainer.ts';

const SIZE = 24;
// Not the default 'rescale': predict and evaluate must take the preprocessing from the model.
const PREPROCESS = 'mobilenet';
const validation = { fraction: 0.25, seed: 1 };

interface Fixture {
  dir: string;
  shapes: string;
  modelDir: string;
  classNames: string[];
  /** The trained model, still in memory (the saved copy is what the commands load). */
  trainer: Trainer;
  /** evaluateSplit on the validation split, with the in-memory model. */
  reference: Evaluation;
  /** Two images per class, copied to probe/<class>/, listed as a folder scan orders them. */
  probeDir: string;
  probes: Array<{ file: string; label: number }>;
}

let fixture: Fixture;

/** Shuffled indices 0..n-1, seeded. */
function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

async function train(trainer: Trainer, split: DataSplit, epochs: number): Promise<void> {
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = shuffled(split.length, epoch + 1);
    for (let start = 0; start < order.length; start += 16) {
      const batch = await split.loadBatch(order.slice(start, start + 16));
      await trainer.trainStep(batch, 0.01);
      batch.release?.();
    }
  }
}

test.before(async () => {
  await initBackend('wasm');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-predict-'));
  const shapes = await generateShapes(path.join(dir, 'shapes'), { perClass: 60, size: SIZE });
  const dataset = await openDataset({ kind: 'folder', path: shapes, imageSize: [SIZE, SIZE], preprocess: PREPROCESS, validation }, { threads: 0 });
  const model = buildScratchModel({
    layers: [{ type: 'conv2d', filters: 8, kernelSize: 3 }, { type: 'maxPool' }, { type: 'conv2d', filters: 16, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 16 }],
    inputShape: [SIZE, SIZE, 3],
    classes: dataset.classNames.length,
    seed: 5,
  });
  const trainer = new Trainer(model, { optimizer: { name: 'adam', learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } });
  await train(trainer, dataset.train, 15);
  const reference = await evaluateSplit(trainer, dataset.validation!, dataset.classNames.length);
  await dataset.close();
  const modelDir = path.join(dir, 'model');
  await saveModel(model, modelDir, { classNames: dataset.classNames, preprocess: PREPROCESS });

  const probeDir = path.join(dir, 'probe');
  const probes: Fixture['probes'] = [];
  for (const [label, name] of dataset.classNames.entries()) {
    await mkdir(path.join(probeDir, name), { recursive: true });
    const files = (await readdir(path.join(shapes, name))).sort().slice(-2);
    for (const file of files) {
      await copyFile(path.join(shapes, name, file), path.join(probeDir, name, file));
      probes.push({ file: path.join(probeDir, name, file), label });
    }
  }
  fixture = { dir, shapes, modelDir, classNames: dataset.classNames, trainer, reference, probeDir, probes };
});

test.after.always(async () => {
  if (!fixture) return;
  fixture.trainer.model.dispose();
  fixture.trainer.optimizer.dispose();
  await rm(fixture.dir, { recursive: true, force: true });
});

function okResults(results: ImagePrediction[]): Array<Extract<ImagePrediction, { ok: true }>> {
  return results.map((r) => {
    if (!r.ok) throw new Error(`${r.image} failed: ${r.reason} ${r.detail}`);
    return r;
  });
}

test.serial('the trained model learned the shapes (sanity check of the fixture)', (t) => {
  t.log(`validation accuracy ${fixture.reference.accuracy}`);
  t.true(fixture.reference.accuracy > 0.5, `validation accuracy ${fixture.reference.accuracy}`);
});

test.serial('predict lists the top-k classes, sorted, with the probabilities the trained model gives', async (t) => {
  const { probes, probeDir, trainer } = fixture;
  const before = tf.memory().numTensors;
  const report = await predictImages({ modelDir: fixture.modelDir, images: probes.map((p) => p.file), topK: 3, backend: 'wasm' });
  t.is(tf.memory().numTensors, before, 'no tensor leaks');
  t.deepEqual(report.classNames, fixture.classNames);
  t.is(report.failed, 0);
  const results = okResults(report.results);
  t.deepEqual(results.map((r) => r.image), probes.map((p) => p.file));

  // What the in-memory model says about the same files, decoded as training decoded them.
  const probeSet = await openDataset({ kind: 'folder', path: probeDir, imageSize: [SIZE, SIZE], preprocess: PREPROCESS }, { threads: 0 });
  t.teardown(() => probeSet.close());
  const batch = await probeSet.train.loadBatch(probes.map((_, i) => i));
  t.deepEqual(Array.from(batch.y), probes.map((p) => p.label), 'the folder scan lists the probes in this order');
  const expected = tf.tidy(() => (trainer.model.predict(tf.tensor4d(batch.x, [batch.n, SIZE, SIZE, 3])) as tf.Tensor2D).arraySync());

  let right = 0;
  for (const [i, result] of results.entries()) {
    t.is(result.top.length, 3);
    const probs = result.top.map((s) => s.probability);
    t.true(probs.every((p, j) => j === 0 || probs[j - 1]! >= p), `sorted: ${probs.join(', ')}`);
    t.true(probs.reduce((a, b) => a + b, 0) <= 1 + 1e-5);
    for (const score of result.top) {
      t.is(score.className, fixture.classNames[score.index]);
      t.true(Math.abs(score.probability - expected[i]![score.index]!) < 1e-5, `${result.image} ${score.className}: ${score.probability} vs ${expected[i]![score.index]}`);
    }
    const best = expected[i]!.indexOf(Math.max(...expected[i]!));
    t.is(result.top[0]!.index, best);
    if (best === probes[i]!.label) right++;
  }
  t.true(right >= probes.length / 2, `${right} of ${probes.length} probes right`);
  const text = formatPredictions(report);
  t.true(text.includes(`${probes[0]!.file}:\n  1. ${results[0]!.top[0]!.className}`), text);
});

test.serial('predict resizes images as the model was trained: the resize mode travels with the model', async (t) => {
  const { dir, trainer, classNames } = fixture;
  // A wide noise image: cover crops its middle, stretch squeezes all of it, so the two differ.
  const wide = path.join(dir, 'wide', 'any');
  await mkdir(wide, { recursive: true });
  const pixels = Buffer.from(Array.from({ length: 3 * SIZE * 3 * SIZE }, (_, i) => (i * 7919) % 251));
  await sharp(pixels, { raw: { width: 3 * SIZE, height: SIZE, channels: 3 } }).png().toFile(path.join(wide, 'wide.png'));
  const expectedAs = async (resize: 'cover' | 'stretch'): Promise<number[]> => {
    const set = await openDataset({ kind: 'folder', path: path.dirname(wide), imageSize: [SIZE, SIZE], resize, preprocess: PREPROCESS }, { threads: 0 });
    try {
      const batch = await set.train.loadBatch([0]);
      return tf.tidy(() => (trainer.model.predict(tf.tensor4d(batch.x, [1, SIZE, SIZE, 3])) as tf.Tensor2D).arraySync()[0]!);
    } finally {
      await set.close();
    }
  };
  const stretched = await expectedAs('stretch');
  const covered = await expectedAs('cover');
  t.true(stretched.some((p, i) => Math.abs(p - covered[i]!) > 1e-3), 'the probe tells the two modes apart');

  const stretchDir = path.join(dir, 'model-stretch');
  await saveModel(trainer.model, stretchDir, { classNames, preprocess: PREPROCESS, resize: 'stretch' });
  for (const [modelDir, expected] of [[stretchDir, stretched], [fixture.modelDir, covered]] as const) {
    const report = await predictImages({ modelDir, images: [path.join(wide, 'wide.png')], topK: classNames.length, backend: 'wasm' });
    const [result] = okResults(report.results);
    for (const score of result!.top) {
      t.true(Math.abs(score.probability - expected[score.index]!) < 1e-5, `${path.basename(modelDir)} ${score.className}: ${score.probability} vs ${expected[score.index]}`);
    }
  }
});

test.serial('a top-k larger than the class count lists every class once, summing to 1', async (t) => {
  const report = await predictImages({ modelDir: fixture.modelDir, images: [fixture.probes[0]!.file], topK: 10 });
  const [result] = okResults(report.results);
  t.deepEqual(result!.top.map((s) => s.index).sort(), [0, 1, 2, 3]);
  t.true(Math.abs(result!.top.reduce((a, s) => a + s.probability, 0) - 1) < 1e-5);
});

test.serial('unreadable and corrupt images are reported one by one and the others still predicted', async (t) => {
  const bad = path.join(fixture.dir, 'bad');
  await mkdir(bad, { recursive: true });
  const corrupt = path.join(bad, 'corrupt.png');
  // A PNG signature followed by garbage: sniffed as PNG, rejected by the decoder.
  await writeFile(corrupt, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(200, 7)]));
  const text = path.join(bad, 'notes.png');
  await writeFile(text, 'not an image at all');
  const missing = path.join(bad, 'missing.png');
  const good = fixture.probes[0]!.file;
  const before = tf.memory().numTensors;
  const report = await predictImages({ modelDir: fixture.modelDir, images: [corrupt, good, missing, text, good] });
  t.is(tf.memory().numTensors, before);
  t.is(report.failed, 3);
  t.deepEqual(report.results.map((r) => [r.image, r.ok]), [[corrupt, false], [good, true], [missing, false], [text, false], [good, true]]);
  const reasons = report.results.map((r) => (r.ok ? 'ok' : r.reason));
  t.true(['corrupt', 'truncated'].includes(reasons[0]!), reasons[0]);
  t.is(reasons[2], 'unreadable');
  t.is(reasons[3], 'unsupported_format');
  const missingResult = report.results[2]!;
  t.true(!missingResult.ok && missingResult.detail.includes('ENOENT'), JSON.stringify(missingResult));
  // The good image gets the same answer wherever it sits in the list.
  t.deepEqual(report.results[1], report.results[4]);
  const lines = formatPredictions(report).split('\n');
  t.true(lines.some((l) => l.startsWith(`${missing}: error: unreadable:`)), lines.join('\n'));
  t.true(lines.includes('3 of 5 images could not be read'));
});

test.serial('evaluate gives exactly what evaluateSplit gave for the trained model on the same split', async (t) => {
  const before = tf.memory().numTensors;
  const result = await evaluateModel({ modelDir: fixture.modelDir, data: { kind: 'folder', path: fixture.shapes, validation }, backend: 'wasm', batchSize: 16 });
  t.is(tf.memory().numTensors, before, 'no tensor leaks');
  const { reference } = fixture;
  t.is(result.split, 'validation');
  t.is(result.n, reference.n);
  t.is(result.accuracy, reference.accuracy);
  t.deepEqual(result.confusion, reference.confusion);
  t.true(Math.abs(result.loss - reference.loss) < 1e-5, `${result.loss} vs ${reference.loss}`);
  t.deepEqual(result.classNames, fixture.classNames);
  t.deepEqual(result.warnings, []);
  const text = formatEvaluation(result);
  t.true(text.includes(`accuracy ${(reference.accuracy * 100).toFixed(2)} %`), text);
  for (const name of fixture.classNames) t.regex(text, new RegExp(`^${name} +\\d`, 'm'));
});

test.serial('evaluate on a folder with only some classes matches them to the model by name', async (t) => {
  const { probes, probeDir, classNames } = fixture;
  const partial = path.join(fixture.dir, 'partial');
  // Only the last two classes: as a folder of its own they would be labels 0 and 1.
  const kept = classNames.slice(2);
  for (const name of kept) {
    await mkdir(path.join(partial, name), { recursive: true });
    for (const file of await readdir(path.join(probeDir, name))) await copyFile(path.join(probeDir, name, file), path.join(partial, name, file));
  }
  const files = probes.filter((p) => p.label >= 2);
  const predictions = okResults((await predictImages({ modelDir: fixture.modelDir, images: files.map((p) => p.file), topK: 1 })).results);
  const result = await evaluateModel({ modelDir: fixture.modelDir, data: partial, threads: 0 });
  t.is(result.split, 'train');
  t.is(result.n, files.length);
  const expected = classNames.map(() => classNames.map(() => 0));
  files.forEach((p, i) => expected[p.label]![predictions[i]!.top[0]!.index]! += 1);
  t.deepEqual(result.confusion, expected);
  t.is(result.accuracy, files.filter((p, i) => predictions[i]!.top[0]!.index === p.label).length / files.length);
});

test.serial('a missing model directory is a DROVER_ERR_MODEL_FILE error naming it', async (t) => {
  const missing = path.join(fixture.dir, 'no-such-model');
  const error = await t.throwsAsync(predictImages({ modelDir: missing, images: [fixture.probes[0]!.file] }));
  t.like(error, { code: 'DROVER_ERR_MODEL_FILE', reason: 'missing-dir', path: missing });
  const again = await t.throwsAsync(evaluateModel({ modelDir: missing, data: fixture.probeDir }));
  t.is((again as { code?: string }).code, 'DROVER_ERR_MODEL_FILE');
});

test.serial('a model saved without class names is a DROVER_ERR_MODEL_METADATA error', async (t) => {
  const plain = path.join(fixture.dir, 'plain-model');
  const model = buildScratchModel({ layers: [{ type: 'flatten' }], inputShape: [SIZE, SIZE, 3], classes: 4 });
  await model.save(directoryHandler(plain));
  model.dispose();
  const before = tf.memory().numTensors;
  const error = await t.throwsAsync(predictImages({ modelDir: plain, images: [fixture.probes[0]!.file] }));
  t.like(error, { code: 'DROVER_ERR_MODEL_METADATA', path: plain });
  t.is(tf.memory().numTensors, before, 'the loaded model is released');
});

test.serial('bad options and unknown classes are errors naming the field or the class', async (t) => {
  const topK = await t.throwsAsync(predictImages({ modelDir: fixture.modelDir, images: ['a.png'], topK: 0 }));
  t.like(topK, { code: 'DROVER_ERR_CONFIG', field: 'topK' });
  const none = await t.throwsAsync(predictImages({ modelDir: fixture.modelDir, images: [] }));
  t.like(none, { code: 'DROVER_ERR_CONFIG', field: 'images' });
  const unknown = await t.throwsAsync(evaluateModel({ modelDir: fixture.modelDir, data: fixture.probeDir, batchsize: 3 } as never));
  t.like(unknown, { code: 'DROVER_ERR_CONFIG', field: 'batchsize' });
  const size = await t.throwsAsync(evaluateModel({ modelDir: fixture.modelDir, data: { kind: 'folder', path: fixture.probeDir, imageSize: [32, 32] }, threads: 0 }));
  t.like(size, { code: 'DROVER_ERR_CONFIG', field: 'data.imageSize' });
  const stranger = path.join(fixture.dir, 'stranger');
  await mkdir(path.join(stranger, 'hexagon'), { recursive: true });
  await copyFile(fixture.probes[0]!.file, path.join(stranger, 'hexagon', 'h.png'));
  const before = tf.memory().numTensors;
  const classes = await t.throwsAsync(evaluateModel({ modelDir: fixture.modelDir, data: stranger, threads: 0 }));
  t.is((classes as { code?: string }).code, 'DROVER_ERR_DATASET');
  t.regex((classes as Error).message, /"hexagon"/);
  t.is(tf.memory().numTensors, before);
});

test.serial('--data takes a folder, inline JSON, or a spec / job file', async (t) => {
  t.deepEqual(await resolveDataArgument(fixture.probeDir), { kind: 'folder', path: fixture.probeDir });
  t.deepEqual(await resolveDataArgument(`{"kind": "folder", "path": "${fixture.probeDir}"}`), { kind: 'folder', path: fixture.probeDir });
  const jobFile = path.join(fixture.dir, 'job.yaml');
  await writeFile(jobFile, `name: x\ndata:\n  kind: folder\n  path: ${fixture.shapes}\n  validation: { fraction: 0.25, seed: 1 }\n`);
  const spec = await resolveDataArgument(jobFile);
  t.deepEqual(spec, { kind: 'folder', path: fixture.shapes, validation });
  const result = await evaluateModel({ modelDir: fixture.modelDir, data: spec, threads: 0 });
  t.is(result.accuracy, fixture.reference.accuracy);
  const bad = await t.throwsAsync(resolveDataArgument('{"kind": '));
  t.like(bad, { code: 'DROVER_ERR_CONFIG', field: 'data' });
});
