/**
 * `drover evaluate MODEL_DIR --data ...`: accuracy, loss and the confusion matrix of a saved
 * model on a dataset, computed by training's own evaluation (GradientModel.evaluate, so the
 * figures match what training reported) over images decoded with the model's training pipeline.
 */
import { z } from 'zod';
import { ConfigError, DatasetError } from '../errors.ts';
import { openDataset } from '../data/open.ts';
import type { Batch, BatchOptions, DataSplit } from '../data/types.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../model/backend.ts';
import { evaluateSplit } from '../job/split-evaluation.ts';
import { GradientModel } from '../train/gradient-model.ts';
import { ensureBackend, loadClassifier, optionsError, pipelineSpec } from './predict.ts';

export const evaluateOptionsSchema = z.strictObject({
  /** A model directory (or model.json path, or URL) saved by drover. */
  modelDir: z.string().min(1),
  /**
   * A folder with one sub-folder per class (all its images are evaluated), or a dataset spec
   * as in a job file's `data`; its imageSize, channels and preprocess default to the model's.
   */
  data: z.union([z.string().min(1), z.record(z.string(), z.unknown())]),
  /** Which split of a spec (default: test, else validation, else train). A folder path has only `train`. */
  split: z.enum(['train', 'validation', 'test']).optional(),
  backend: z.enum(BACKEND_CHOICES as unknown as [BackendChoice, ...BackendChoice[]]).optional(),
  batchSize: z.number().int().positive().default(64),
  /** Decode threads (default: cores, at most 4; 0 decodes on this thread). */
  threads: z.number().int().min(0).optional(),
});
export type EvaluateOptions = z.input<typeof evaluateOptionsSchema>;

export interface ModelEvaluation {
  accuracy: number;
  /** Mean cross-entropy. */
  loss: number;
  /** Samples evaluated (skipped ones excluded). */
  n: number;
  /** confusion[true][predicted], indexed like classNames. */
  confusion: number[][];
  /** The model's classes. */
  classNames: string[];
  dataset: string;
  split: 'train' | 'validation' | 'test';
  /** Samples that could not be decoded (each one logged as data_skip if a logger was given). */
  skipped: number;
  /** Things worth telling the user, e.g. a spec whose preprocess differs from the model's. */
  warnings: string[];
}

/**
 * Evaluates a saved model on a dataset. Dataset classes are matched to the model's by name,
 * so a folder holding only some of the classes (or listing them in another order) is scored
 * correctly; a class the model does not know is a DatasetError.
 */
export async function evaluateModel(options: EvaluateOptions): Promise<ModelEvaluation> {
  const parsed = evaluateOptionsSchema.safeParse(options);
  if (!parsed.success) throw optionsError(parsed.error, 'evaluate');
  const { modelDir, data, split: wanted, backend, batchSize, threads } = parsed.data;
  await ensureBackend(backend);
  const classifier = await loadClassifier(modelDir);
  const warnings: string[] = [];
  // Spec values the user wrote win; the model's pipeline fills in the rest.
  const spec = typeof data === 'string' ? pipelineSpec(classifier, data) : { ...withoutPath(pipelineSpec(classifier, '')), ...data };
  if (typeof data !== 'string' && 'preprocess' in data && JSON.stringify(data.preprocess) !== JSON.stringify(classifier.preprocess)) {
    warnings.push(`data.preprocess ${JSON.stringify(data.preprocess)} differs from the model's ${JSON.stringify(classifier.preprocess)}`);
  }
  try {
    const dataset = await openDataset(spec, threads === undefined ? {} : { threads });
    try {
      const [h, w, c] = classifier.inputShape;
      const [dh, dw, dc] = dataset.inputShape;
      if (dh !== h || dw !== w || dc !== c) {
        throw new ConfigError(`data: images decode to ${dh}x${dw}x${dc} but the model ${modelDir} takes ${h}x${w}x${c}: drop imageSize / channels from the spec or make them match`, 'data.imageSize');
      }
      const splitName = wanted ?? (dataset.test ? 'test' : dataset.validation ? 'validation' : 'train');
      const chosen = dataset[splitName];
      if (!chosen) throw new ConfigError(`data: the dataset ${dataset.name} has no ${splitName} split`, 'split');
      const mapping = classMapping(dataset.classNames, classifier.classNames, dataset.name);
      const before = dataset.skipCounts().total;
      const result = await evaluateSplit(new GradientModel(classifier.model), mapping ? relabel(chosen, mapping) : chosen, classifier.classNames.length, { batchSize });
      return {
        accuracy: result.accuracy,
        loss: result.loss,
        n: result.n,
        confusion: result.confusion,
        classNames: classifier.classNames,
        dataset: dataset.name,
        split: splitName,
        skipped: dataset.skipCounts().total - before,
        warnings,
      };
    } finally {
      await dataset.close();
    }
  } finally {
    classifier.model.dispose();
  }
}

function withoutPath(spec: Record<string, unknown>): Record<string, unknown> {
  const { path: _path, kind: _kind, ...rest } = spec;
  return rest;
}

/**
 * Model index of each dataset class index; null when they are the same list. Throws when the
 * dataset has a class the model does not know.
 */
export function classMapping(datasetClasses: readonly string[], modelClasses: readonly string[], dataset: string): Int32Array | null {
  if (datasetClasses.length === modelClasses.length && datasetClasses.every((name, i) => name === modelClasses[i])) return null;
  const unknown = datasetClasses.filter((name) => !modelClasses.includes(name));
  if (unknown.length > 0) {
    throw new DatasetError(
      `${dataset}: classes ${unknown.map((n) => `"${n}"`).join(', ')} are not among the model's (${modelClasses.join(', ')}): rename the folders, or give classNames in the spec`,
    );
  }
  return Int32Array.from(datasetClasses, (name) => modelClasses.indexOf(name));
}

/** A view of a split whose labels are model class indices. */
function relabel(split: DataSplit, mapping: Int32Array): DataSplit {
  return {
    length: split.length,
    label: (index) => mapping[split.label(index)]!,
    async loadBatch(indices: ArrayLike<number>, options?: BatchOptions): Promise<Batch> {
      const batch = await split.loadBatch(indices, options);
      const y = Int32Array.from(batch.y, (label) => mapping[label]!);
      return { ...batch, y };
    },
  };
}

/** Accuracy, loss and a confusion matrix table (rows: true class) with per-class recall. */
export function formatEvaluation(evaluation: ModelEvaluation): string {
  const { classNames, confusion } = evaluation;
  const correct = confusion.reduce((sum, row, i) => sum + row[i]!, 0);
  const lines = [
    `${evaluation.dataset} (${evaluation.split}): accuracy ${(evaluation.accuracy * 100).toFixed(2)} % (${correct} / ${evaluation.n}), loss ${evaluation.loss.toFixed(4)}` +
      (evaluation.skipped > 0 ? `, ${evaluation.skipped} images skipped` : ''),
    ...evaluation.warnings.map((w) => `warning: ${w}`),
    '',
    'confusion matrix (rows: true class, columns: predicted)',
  ];
  const corner = 'true \\ predicted';
  const first = Math.max(corner.length, ...classNames.map((n) => n.length));
  const widths = classNames.map((name, j) => Math.max(name.length, ...confusion.map((row) => String(row[j]).length)));
  const recall = 'recall';
  lines.push([corner.padEnd(first), ...classNames.map((name, j) => name.padStart(widths[j]!)), recall.padStart(8)].join('  '));
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    const r = total > 0 ? `${((row[i]! / total) * 100).toFixed(1)} %` : '-';
    lines.push([classNames[i]!.padEnd(first), ...row.map((v, j) => String(v).padStart(widths[j]!)), r.padStart(8)].join('  '));
  });
  return lines.join('\n') + '\n';
}
