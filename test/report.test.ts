import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ConfigError, RunLogError } from '../src/errors.ts';
import { writeReport } from '../src/telemetry/report.ts';
import { syntheticRunEvents, writeRunLog } from './helpers/run-log.ts';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-report-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Size from the SVG's own width/height attributes. */
function svgSize(svg: string): { width: number; height: number } {
  const match = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  if (!match) throw new Error('no svg size');
  return { width: Number(match[1]), height: Number(match[2]) };
}

/** A PNG that decodes, has the expected pixel size, and is not one flat colour. */
async function assertPlot(t: ExecutionContext, file: string, expected: { width: number; height: number }): Promise<void> {
  const bytes = await readFile(file);
  t.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} has the PNG signature`);
  const meta = await sharp(bytes).metadata();
  t.is(meta.format, 'png');
  t.is(meta.width, expected.width);
  t.is(meta.height, expected.height);
  const stats = await sharp(bytes).stats();
  // Blank (all white) would have zero spread in every channel; a plot has ink and colour.
  t.true(stats.channels.slice(0, 3).every((c) => c.stdev > 10), JSON.stringify(stats.channels.map((c) => c.stdev)));
  t.false(stats.isOpaque === false && stats.channels.length === 4 && stats.channels[3]!.max === 0, 'not fully transparent');
  // Dark pixels (text, axes, lines) are present but a minority: an image, not a black square.
  const { data, info } = await sharp(bytes).greyscale().raw().toBuffer({ resolveWithObject: true });
  let dark = 0;
  for (const v of data) if (v < 128) dark++;
  const share = dark / (info.width * info.height);
  t.true(share > 0.005 && share < 0.5, `dark share ${share}`);
}

test('a report of a finished run has learning curves and a confusion matrix as SVG and PNG', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  await writeRunLog(logPath, syntheticRunEvents({ epochs: 5, stepsPerEpoch: 30 }));
  const outDir = join(dir, 'report');
  const result = await writeReport({ logPath, outDir, scale: 2 });
  t.deepEqual(
    result.files.map((f) => f.slice(outDir.length + 1)),
    ['learning-curves.svg', 'learning-curves.png', 'confusion-matrix.svg', 'confusion-matrix.png'],
  );
  t.deepEqual(result.skipped, []);

  for (const name of ['learning-curves', 'confusion-matrix']) {
    const svg = await readFile(join(outDir, `${name}.svg`), 'utf8');
    const size = svgSize(svg);
    t.true(size.width > 300 && size.height > 300, `${name} svg ${size.width}x${size.height}`);
    // The PNG is the SVG at 2 pixels per unit.
    await assertPlot(t, join(outDir, `${name}.png`), { width: size.width * 2, height: size.height * 2 });
    const image = result.images.find((i) => i.file.endsWith(`${name}.png`))!;
    t.deepEqual({ width: image.width, height: image.height }, { width: size.width * 2, height: size.height * 2 });
  }

  const curves = await readFile(join(outDir, 'learning-curves.svg'), 'utf8');
  for (const title of ['Loss per epoch', 'Accuracy per epoch', 'Training loss per step', 'validation']) t.true(curves.includes(title), title);
  // Lines were drawn: path data with many segments, not just axes.
  const longest = Math.max(...[...curves.matchAll(/ d="([^"]+)"/g)].map((m) => m[1]!.split(/[LM]/).length));
  t.true(longest >= 100, `longest path has ${longest} points`);
  const confusion = await readFile(join(outDir, 'confusion-matrix.svg'), 'utf8');
  for (const label of ['T-shirt/top', 'Ankle boot', 'true class', 'predicted class', '>960<']) t.true(confusion.includes(label), label);
});

test('a log without an evaluation gets its learning curves and says why the matrix is missing', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  await writeRunLog(logPath, syntheticRunEvents({ epochs: 2, stepsPerEpoch: 10, evaluation: false, finished: false }));
  const result = await writeReport({ logPath, outDir: dir, scale: 1 });
  t.deepEqual(result.files.map((f) => f.slice(dir.length + 1)), ['learning-curves.svg', 'learning-curves.png']);
  t.is(result.skipped.length, 1);
  t.is(result.skipped[0]!.figure, 'confusion-matrix');
  t.regex(result.skipped[0]!.reason, /no evaluation event/);
  const svg = await readFile(join(dir, 'learning-curves.svg'), 'utf8');
  await assertPlot(t, join(dir, 'learning-curves.png'), svgSize(svg));
});

test('a missing log, a log with nothing to plot and bad options are clear errors', async (t) => {
  const dir = await tempDir(t);
  const missing = await t.throwsAsync(writeReport({ logPath: join(dir, 'nope.jsonl'), outDir: dir }), { instanceOf: RunLogError });
  t.is(missing.code, 'DROVER_ERR_RUN_LOG');
  t.regex(missing.message, /not found/);

  const noise = join(dir, 'noise.jsonl');
  await writeFile(noise, 'hello\n{"level":30,"msg":"listening"}\n{"event":"step","loss":"x"}\n');
  const empty = await t.throwsAsync(writeReport({ logPath: noise, outDir: dir }), { instanceOf: RunLogError });
  t.regex(empty.message, /no step or epoch events.*1 other log lines, 1 lines not JSON, 1 invalid events/);

  const scale = await t.throwsAsync(writeReport({ logPath: noise, outDir: dir, scale: 0 }), { instanceOf: ConfigError });
  t.is((scale as ConfigError).field, 'scale');
  const out = await t.throwsAsync(writeReport({ logPath: noise, outDir: '' }), { instanceOf: ConfigError });
  t.is((out as ConfigError).field, 'outDir');
});
