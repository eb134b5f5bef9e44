import test from 'ava';
import { ConfigError } from '../src/errors.ts';
import { datasetSpecSchema, parseDatasetSpec } from '../src/data/sources/index.ts';
import { openDataset } from '../src/data/open.ts';

test('a minimal spec gets its defaults', (t) => {
  const spec = parseDatasetSpec({ kind: 'folder', path: '/data/flowers', augment: { horizontalFlip: true } });
  t.like(spec, { resize: 'cover', preprocess: 'rescale', seed: 0, maxInputPixels: 50_000_000 });
  t.like(spec.augment, { rotationRange: 0, fillMode: 'nearest', interpolation: 'bilinear', zoomRange: 0, horizontalFlip: true });
});

test('a bad field is a ConfigError naming its dotted path, under an optional prefix', (t) => {
  const cases: [unknown, string][] = [
    [{ kind: 'folder', path: 'x', augment: { rotationRange: -5 } }, 'data.augment.rotationRange'],
    [{ kind: 'folder', path: 'x', imageSize: [224, 0] }, 'data.imageSize.1'],
    [{ kind: 'folder', path: 'x', validation: { fraction: 1.5 } }, 'data.validation.fraction'],
    [{ kind: 'folder', path: 'x', augment: { fillMode: 'mirror' } }, 'data.augment.fillMode'],
    [{ kind: 'folder', path: 'x', augment: { zoomRange: [1.2, 0.8] } }, 'data.augment.zoomRange'],
    [{ kind: 'folder', path: 'x', preprocess: { mean: [0.5], std: [0] } }, 'data.preprocess.std.0'],
    [{ kind: 'folder', path: 'x', colour: true }, 'data.colour'],
    [{ kind: 'cifar', path: 'x', variant: 11 }, 'data.variant'],
    [{ kind: 'tfrecord', path: 'x' }, 'data.kind'],
  ];
  for (const [input, field] of cases) {
    const error = t.throws(() => parseDatasetSpec(input, 'data'), { instanceOf: ConfigError }, JSON.stringify(input));
    t.is(error!.field, field, JSON.stringify(input));
  }
});

test('openDataset rejects (does not throw) on a bad spec', async (t) => {
  const pending = openDataset({ kind: 'folder' });
  t.true(pending instanceof Promise);
  const error = await t.throwsAsync(pending, { instanceOf: ConfigError });
  t.is(error!.field, 'path');
});

test('the schema embeds in a larger one', (t) => {
  t.true(datasetSpecSchema.safeParse({ kind: 'idx', dir: '/d' }).success);
  t.false(datasetSpecSchema.safeParse({ kind: 'idx', path: '/d' }).success);
});

test('a per-channel mean / std of the wrong length is refused when the dataset opens', async (t) => {
  const error = await t.throwsAsync(openDataset({ kind: 'cifar', path: '/nonexistent', preprocess: { mean: [0.5, 0.5], std: [0.2, 0.2] } }), { instanceOf: ConfigError });
  t.is(error!.field, 'preprocess.mean');
});
