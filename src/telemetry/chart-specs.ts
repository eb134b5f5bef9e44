import type { DatasetName } from './chart-rows.ts';

/**
 * The charts of a run as Vega-Lite specs over the named datasets of RunState: the dashboard
 * page compiles them in the browser and streams rows into them, the report renders them in
 * Node with the rows inline. One definition, so both draw the same thing.
 */

/** A Vega-Lite spec as plain JSON (vega-lite's own types are checked when it compiles). */
export type VegaLiteSpec = Record<string, unknown>;

export const CHART_NAMES = ['epoch-loss', 'epoch-accuracy', 'step-loss', 'learning-rate', 'throughput', 'step-time', 'confusion', 'membership'] as const;
export type ChartName = (typeof CHART_NAMES)[number];

export interface ChartDefinition {
  name: ChartName;
  /** The dataset the chart reads; the page streams this one into it. */
  dataset: DatasetName;
  spec: VegaLiteSpec;
}

export interface ChartLayout {
  /** Pixels, or 'container' to follow the width of the element the page puts it in. */
  width: number | 'container';
  height: number;
}

const SPLIT_COLORS = { domain: ['train', 'validation'], range: ['#1f77b4', '#ff7f0e'] };
const STATE_COLORS = { domain: ['active', 'left', 'failed'], range: ['#2ca02c', '#9e9e9e', '#d62728'] };
const PHASE_COLORS = { domain: ['data wait', 'compute', 'transfer', 'reduce'], range: ['#bcbd22', '#1f77b4', '#9467bd', '#e377c2'] };

/**
 * Neighbours on each side averaged by the smoothed step-level lines, at most. A centred window
 * does not lag behind the raw series as a trailing mean does; it narrows when a run has few
 * points (a run that logs every N steps), so that the line still follows the series instead
 * of flattening it to its mean: about one point in each side per 8 points, up to this many.
 */
export const SMOOTHING_HALF_WINDOW = 5;
const POINTS_PER_NEIGHBOUR = 8;

/**
 * Transforms adding `smoothed` (centred mean of `field` over the nearest points, the window
 * narrowed for short series, see SMOOTHING_HALF_WINDOW) and `window` (the points averaged).
 */
function smoothing(field: string, groupby: string[] = []): VegaLiteSpec[] {
  const halves = Array.from({ length: SMOOTHING_HALF_WINDOW }, (_, i) => i + 1);
  return [
    { joinaggregate: [{ op: 'count', as: 'points' }], groupby },
    ...halves.map((h) => ({ window: [{ op: 'mean', field, as: `mean${h}` }], frame: [-h, h], groupby, sort: [{ field: 'step' }] })),
    { calculate: `min(${SMOOTHING_HALF_WINDOW}, floor(datum.points / ${POINTS_PER_NEIGHBOUR}))`, as: 'half' },
    { calculate: `datum.half === 0 ? datum.${field} : ${halves.map((h) => `datum.half === ${h} ? datum.mean${h}`).join(' : ')} : datum.${field}`, as: 'smoothed' },
    { calculate: '2 * datum.half + 1', as: 'window' },
  ];
}

/**
 * Ticks for an axis as wide as the chart, one per `spacing` pixels: from the width signal when
 * the page sizes the chart (a top-level view has one), else from the fixed width (a report).
 */
function tickCount(layout: ChartLayout, spacing: number): VegaLiteSpec | number {
  return layout.width === 'container' ? { expr: `ceil(width / ${spacing})` } : Math.ceil(layout.width / spacing);
}

/** Step axis: integer ticks spaced for their labels (5-digit steps must not run together). */
function stepAxis(layout: ChartLayout): VegaLiteSpec {
  return { tickMinStep: 1, format: 'd', tickCount: tickCount(layout, 90), labelOverlap: 'greedy', labelSeparation: 10, labelFlush: true };
}

function epochCurve(metric: 'loss' | 'accuracy', layout: ChartLayout): VegaLiteSpec {
  return {
    title: metric === 'loss' ? 'Loss per epoch' : 'Accuracy per epoch',
    width: layout.width,
    height: layout.height,
    data: { name: 'epochs' },
    mark: { type: 'line', point: { size: 40 }, strokeWidth: 2 },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1, format: 'd', labelOverlap: 'greedy', labelFlush: true }, scale: { zero: false } },
      y: { field: metric, type: 'quantitative', title: metric, scale: { zero: false } },
      color: { field: 'split', type: 'nominal', title: null, scale: SPLIT_COLORS, legend: { orient: 'bottom' } },
      tooltip: [
        { field: 'epoch', type: 'quantitative' },
        { field: 'split', type: 'nominal' },
        { field: metric, type: 'quantitative', format: '.4f' },
      ],
    },
  };
}

function stepLoss(layout: ChartLayout): VegaLiteSpec {
  const x = { field: 'step', type: 'quantitative', title: 'step', axis: stepAxis(layout), scale: { zero: false } };
  // Two lines, named in a legend: what was logged, and its centred mean.
  const lines = { domain: ['logged', 'smoothed'], range: ['#9ecae1', '#1f77b4'] };
  return {
    title: { text: 'Training loss per step', subtitle: 'logged: the loss of each logged step (train.logEvery); smoothed: centred mean of the nearest logged steps' },
    width: layout.width,
    height: layout.height,
    data: { name: 'steps' },
    transform: smoothing('loss'),
    layer: [
      {
        mark: { type: 'line', strokeWidth: 1 },
        encoding: {
          x,
          y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
          color: { datum: 'logged', type: 'nominal', title: null, scale: lines, legend: { orient: 'top-right', direction: 'horizontal', fillColor: 'rgba(255,255,255,0.8)' } },
        },
      },
      {
        mark: { type: 'line', strokeWidth: 2 },
        encoding: {
          x,
          y: { field: 'smoothed', type: 'quantitative' },
          color: { datum: 'smoothed', type: 'nominal' },
          tooltip: [
            { field: 'step', type: 'quantitative' },
            { field: 'epoch', type: 'quantitative' },
            { field: 'loss', type: 'quantitative', format: '.4f' },
            { field: 'smoothed', type: 'quantitative', format: '.4f' },
            { field: 'window', type: 'quantitative', title: 'points averaged' },
            { field: 'steps', type: 'quantitative', title: 'steps per point' },
          ],
        },
      },
    ],
  };
}

function learningRate(layout: ChartLayout): VegaLiteSpec {
  return {
    title: { text: 'Learning rate', subtitle: 'as the schedule set it for each logged step' },
    width: layout.width,
    height: layout.height,
    data: { name: 'steps' },
    mark: { type: 'line', strokeWidth: 2, interpolate: 'step-after', color: '#8c564b' },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', axis: stepAxis(layout), scale: { zero: false } },
      y: { field: 'lr', type: 'quantitative', title: 'learning rate', axis: { format: '.1e' }, scale: { zero: false, padding: 8 } },
      tooltip: [
        { field: 'step', type: 'quantitative' },
        { field: 'epoch', type: 'quantitative' },
        { field: 'lr', type: 'quantitative', format: '.3e', title: 'learning rate' },
      ],
    },
  };
}

function throughput(layout: ChartLayout): VegaLiteSpec {
  return {
    title: 'Throughput per worker (images/s)',
    width: layout.width,
    height: layout.height,
    data: { name: 'throughput' },
    transform: smoothing('imgPerSec', ['worker']),
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', axis: stepAxis(layout), scale: { zero: false } },
      y: { field: 'smoothed', type: 'quantitative', title: 'images/s (smoothed)' },
      color: { field: 'worker', type: 'nominal', title: null, legend: { orient: 'bottom' } },
      tooltip: [
        { field: 'worker', type: 'nominal' },
        { field: 'step', type: 'quantitative' },
        { field: 'imgPerSec', type: 'quantitative', format: '.1f', title: 'images/s' },
      ],
    },
  };
}

function stepTime(layout: ChartLayout): VegaLiteSpec {
  return {
    title: 'Step time split (ms)',
    width: layout.width,
    height: layout.height,
    data: { name: 'stepTime' },
    transform: smoothing('ms', ['phase']),
    mark: { type: 'area', opacity: 0.85 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', axis: stepAxis(layout), scale: { zero: false } },
      y: { field: 'smoothed', type: 'quantitative', stack: 'zero', title: 'ms (smoothed)' },
      color: { field: 'phase', type: 'nominal', title: null, scale: PHASE_COLORS, legend: { orient: 'bottom' } },
      order: { field: 'order', type: 'quantitative' },
      tooltip: [
        { field: 'phase', type: 'nominal' },
        { field: 'step', type: 'quantitative' },
        { field: 'ms', type: 'quantitative', format: '.1f' },
      ],
    },
  };
}

function membership(layout: ChartLayout): VegaLiteSpec {
  return {
    title: 'Worker membership',
    width: layout.width,
    height: { step: 22 },
    data: { name: 'membership' },
    layer: [
      {
        mark: { type: 'bar', cornerRadius: 2, height: { band: 0.7 } },
        encoding: {
          x: { field: 'start', type: 'temporal', title: 'time', axis: { format: '%H:%M:%S', tickCount: tickCount(layout, 110), labelOverlap: 'greedy', labelSeparation: 12, labelFlush: true } },
          x2: { field: 'end' },
          y: { field: 'worker', type: 'nominal', title: null, sort: null },
          color: { field: 'state', type: 'nominal', title: null, scale: STATE_COLORS, legend: { orient: 'bottom' } },
          tooltip: [
            { field: 'worker', type: 'nominal' },
            { field: 'state', type: 'nominal' },
            { field: 'start', type: 'temporal', format: '%H:%M:%S' },
            { field: 'end', type: 'temporal', format: '%H:%M:%S' },
            { field: 'reason', type: 'nominal' },
          ],
        },
      },
      {
        // A failure is a moment: mark it so a short interval still shows it.
        transform: [{ filter: "datum.state === 'failed'" }],
        mark: { type: 'point', shape: 'cross', size: 90, filled: true, color: '#d62728' },
        encoding: {
          x: { field: 'end', type: 'temporal' },
          y: { field: 'worker', type: 'nominal', sort: null },
        },
      },
    ],
  };
}

/**
 * The title names the split the matrix is of: given (the report knows it), or read from the
 * rows (the page's last evaluation may be a validation or the test split).
 */
function confusion(title: string | undefined): VegaLiteSpec {
  const axis = { labelAngle: 0, labelLimit: 130 };
  const fromRows =
    "length(data('confusion')) > 0 ? 'Confusion matrix, ' + data('confusion')[0].split + ' split' + " +
    "(data('confusion')[0].epoch ? ' (epoch ' + data('confusion')[0].epoch + ')' : '') + ', ' + format(data('confusion')[0].samples, ',') + ' samples' : 'Confusion matrix'";
  return {
    title: title ?? { text: { expr: fromRows } },
    width: { step: 40 },
    height: { step: 28 },
    data: { name: 'confusion' },
    transform: [{ joinaggregate: [{ op: 'distinct', field: 'actual', as: 'classes' }] }],
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: null, title: 'predicted class', axis: { ...axis, labelAngle: -40, orient: 'bottom' } },
      y: { field: 'actual', type: 'nominal', sort: null, title: 'true class', axis },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: {
            field: 'rate',
            type: 'quantitative',
            title: 'share of class',
            // sqrt: a 5 % confusion is visible, an empty cell is white.
            scale: { type: 'sqrt', domain: [0, 1], range: ['#ffffff', '#08519c'], interpolate: 'rgb' },
            legend: { format: '.0%' },
          },
          tooltip: [
            { field: 'actual', type: 'nominal', title: 'true' },
            { field: 'predicted', type: 'nominal' },
            { field: 'count', type: 'quantitative' },
            { field: 'rate', type: 'quantitative', format: '.1%', title: 'share of true class' },
          ],
        },
      },
      {
        // Counts in the cells while they are legible (up to 20 classes).
        transform: [{ filter: 'datum.classes <= 20 && datum.count > 0' }],
        mark: { type: 'text', fontSize: 10 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.rate > 0.5', value: 'white' }, value: '#222' },
        },
      },
    ],
  };
}

/** Every chart of the dashboard, each with the dataset it reads. */
export function chartDefinitions(layout: ChartLayout, confusionTitle?: string): ChartDefinition[] {
  return [
    { name: 'epoch-loss', dataset: 'epochs', spec: epochCurve('loss', layout) },
    { name: 'epoch-accuracy', dataset: 'epochs', spec: epochCurve('accuracy', layout) },
    { name: 'step-loss', dataset: 'steps', spec: stepLoss(layout) },
    { name: 'learning-rate', dataset: 'steps', spec: learningRate(layout) },
    { name: 'throughput', dataset: 'throughput', spec: throughput(layout) },
    { name: 'step-time', dataset: 'stepTime', spec: stepTime(layout) },
    { name: 'confusion', dataset: 'confusion', spec: confusion(confusionTitle) },
    { name: 'membership', dataset: 'membership', spec: membership(layout) },
  ];
}

/** Look shared by page and report: light, quiet axes, readable titles. */
export const CHART_CONFIG = {
  font: 'DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif',
  title: { fontSize: 13, anchor: 'start', offset: 8, subtitleFontSize: 11, subtitleColor: '#69707d' },
  axis: { labelFontSize: 11, titleFontSize: 11, gridColor: '#ececec' },
  legend: { labelFontSize: 11 },
  view: { stroke: '#e0e0e0' },
};

/** A top-level spec: the config, the datasets (for a render with data inline) and the body. */
export function topLevel(body: VegaLiteSpec, datasets?: Record<string, unknown[]>): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    padding: 12,
    config: CHART_CONFIG,
    ...(datasets ? { datasets } : {}),
    ...(body.width === 'container' ? { autosize: { type: 'fit-x', contains: 'padding' } } : {}),
    ...body,
  };
}
