import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import { compile } from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { ConfigError, RunLogError } from '../errors.ts';
import { chartDefinitions, topLevel } from './chart-specs.ts';
import type { ChartName, VegaLiteSpec } from './chart-specs.ts';
import { readRunLog } from './run-log.ts';
import type { RunState } from './run-state.ts';

export interface ReportOptions {
  /** The run's JSON-lines log. */
  logPath: string;
  /** Folder for the figures; created if missing. */
  outDir: string;
  /** PNG pixels per SVG pixel. Default 2 (crisp on high-density screens and in print). */
  scale?: number;
}

export interface ReportImage {
  /** Absolute or outDir-relative path as written. */
  file: string;
  format: 'svg' | 'png';
  /** Pixel size (for SVG, its user units). */
  width: number;
  height: number;
}

export interface ReportResult {
  /** Every file written, in order. */
  files: string[];
  images: ReportImage[];
  /** Figures not drawn, with the reason (e.g. no evaluation in the log). */
  skipped: { figure: string; reason: string }[];
}

const REPORT_OPTION_KEYS = new Set(['logPath', 'outDir', 'scale']);

function validate(options: ReportOptions): void {
  for (const key of Object.keys(options)) {
    if (!REPORT_OPTION_KEYS.has(key)) throw new ConfigError(`unknown report option "${key}"`, key);
  }
  if (typeof options.logPath !== 'string' || options.logPath === '') {
    throw new ConfigError(`logPath must be a path to a run log, got ${JSON.stringify(options.logPath)}`, 'logPath');
  }
  if (typeof options.outDir !== 'string' || options.outDir === '') {
    throw new ConfigError(`outDir must be a folder path, got ${JSON.stringify(options.outDir)}`, 'outDir');
  }
  if (options.scale !== undefined && !(Number.isFinite(options.scale) && options.scale > 0 && options.scale <= 8)) {
    throw new ConfigError(`scale must be a number in (0, 8], got ${String(options.scale)}`, 'scale');
  }
}

/** Renders a Vega-Lite spec to SVG in Node: no browser and no canvas needed. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const vegaSpec = compile(spec as unknown as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(vegaSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG with sharp (librsvg) at `scale` pixels per SVG unit; returns the PNG and its size. */
export async function svgToPng(svg: string, scale: number): Promise<{ png: Buffer; width: number; height: number }> {
  const png = await sharp(Buffer.from(svg), { density: 72 * scale }).png().toBuffer({ resolveWithObject: true });
  return { png: png.data, width: png.info.width, height: png.info.height };
}

function svgSize(svg: string): { width: number; height: number } {
  const match = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  return { width: Number(match?.[1] ?? 0), height: Number(match?.[2] ?? 0) };
}

function runTitle(state: RunState): string {
  const s = state.summary;
  const what = [s.model, s.dataset].filter(Boolean).join(' on ');
  const parts = [s.job ?? 'run', what && `(${what})`, s.status !== 'running' && s.status !== 'waiting' ? `- ${s.status}` : ''];
  return parts.filter(Boolean).join(' ');
}

function learningCurvesSpec(state: RunState): VegaLiteSpec {
  const charts = new Map<ChartName, VegaLiteSpec>(chartDefinitions({ width: 380, height: 240 }).map((c) => [c.name, c.spec]));
  const wide = chartDefinitions({ width: 380 * 2 + 60, height: 200 }).find((c) => c.name === 'step-loss')!.spec;
  const s = state.summary;
  const subtitle: string[] = [];
  if (s.bestValAccuracy !== undefined) subtitle.push(`best validation accuracy ${s.bestValAccuracy.toFixed(4)} (epoch ${s.bestValEpoch})`);
  if (s.testAccuracy !== undefined) subtitle.push(`test accuracy ${s.testAccuracy.toFixed(4)}`);
  if (s.earlyStop) subtitle.push(`early stop after epoch ${s.earlyStop.epoch}`);
  return topLevel(
    {
      title: { text: `Learning curves: ${runTitle(state)}`, subtitle: subtitle.join(' - '), fontSize: 15 },
      vconcat: [{ hconcat: [charts.get('epoch-loss')!, charts.get('epoch-accuracy')!] }, wide],
      spacing: 28,
      // The epoch curves colour splits, the step chart logged vs smoothed: separate scales and legends.
      resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } },
    },
    { epochs: state.rows.epochs, steps: state.rows.steps },
  );
}

function confusionSpec(state: RunState): VegaLiteSpec {
  const e = state.lastEvaluation!;
  const title = `Confusion matrix, ${e.split} (${e.n.toLocaleString('en-US')} samples, accuracy ${e.accuracy.toFixed(4)})`;
  const chart = chartDefinitions({ width: 400, height: 400 }, title).find((c) => c.name === 'confusion')!.spec;
  return topLevel(chart, { confusion: state.rows.confusion });
}

/**
 * Writes the figures of a run from its log: `learning-curves.svg/.png` (train vs validation
 * loss and accuracy per epoch, loss per step) and `confusion-matrix.svg/.png` of the last
 * `evaluation` event (skipped, with the reason in `skipped`, when the log has none). Charts
 * are Vega-Lite rendered to SVG in Node and rasterised with sharp. Rejects with RunLogError
 * when the log is missing or holds no training progress.
 */
export async function writeReport(options: ReportOptions): Promise<ReportResult> {
  validate(options);
  const scale = options.scale ?? 2;
  const state = await readRunLog(options.logPath);
  const { rows, summary } = state;
  if (rows.epochs.length === 0 && rows.steps.length === 0) {
    const l = summary.lines;
    throw new RunLogError(
      `${options.logPath} holds no step or epoch events to plot ` +
        `(${l.events} events, ${l.records} other log lines, ${l.notJson} lines not JSON, ${l.invalidEvents} invalid events)`,
      options.logPath,
    );
  }
  await mkdir(options.outDir, { recursive: true });
  const result: ReportResult = { files: [], images: [], skipped: [] };

  const figures: { name: string; spec: VegaLiteSpec }[] = [{ name: 'learning-curves', spec: learningCurvesSpec(state) }];
  if (state.lastEvaluation) figures.push({ name: 'confusion-matrix', spec: confusionSpec(state) });
  else result.skipped.push({ figure: 'confusion-matrix', reason: `${options.logPath} has no evaluation event (the run did not finish its evaluation)` });

  for (const figure of figures) {
    const svg = await renderSvg(figure.spec);
    const svgFile = join(options.outDir, `${figure.name}.svg`);
    await writeFile(svgFile, svg);
    result.files.push(svgFile);
    result.images.push({ file: svgFile, format: 'svg', ...svgSize(svg) });
    const { png, width, height } = await svgToPng(svg, scale);
    const pngFile = join(options.outDir, `${figure.name}.png`);
    await writeFile(pngFile, png);
    result.files.push(pngFile);
    result.images.push({ file: pngFile, format: 'png', width, height });
  }
  return result;
}
