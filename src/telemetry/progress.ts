import { Writable } from 'node:stream';
import { eventTimeMs, parseLogLine } from './events.ts';
import type { DroverEvent, EpochEvent, LogRecord, ParsedLine, StepEvent } from './events.ts';

/** A terminal-like stream: only `write` is needed; `columns` bounds the line width. */
export interface TerminalStream {
  write(chunk: string): unknown;
  columns?: number;
  isTTY?: boolean;
}

export interface ProgressOptions {
  /** Where the bar is drawn: a TTY (stdout) or anything with write(). */
  out: TerminalStream;
  /** Characters inside the brackets at most; shrinks to fit the terminal. Default 30 (Keras). */
  barWidth?: number;
  /** Redraw the bar at most this often (wall clock); the last step of an epoch always draws. Default 100. */
  minRedrawMs?: number;
  /** Skipped samples printed one by one before only counting them. Default 5. */
  maxSkipLines?: number;
  /** Wall clock, for throttling and events without `time`. */
  now?: () => number;
}

const CLEAR_LINE = '\x1b[K';
/** Info-level lines shown per unknown event name before they are only logged. */
const UNKNOWN_EVENT_LINES = 3;

/** Keras' number format: 4 decimals, scientific when tiny. */
export function formatMetric(x: number): string {
  return x !== 0 && Math.abs(x) < 1e-3 ? x.toExponential(4) : x.toFixed(4);
}

/** Keras' ETA format: `12s`, `1:02`, `1:02:03`. */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}:${pad2(Math.floor((s % 3600) / 60))}:${pad2(s % 60)}`;
  if (s >= 60) return `${Math.floor(s / 60)}:${pad2(s % 60)}`;
  return `${s}s`;
}

/** A duration for humans: `45s`, `3m 12s`, `1h 02m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${s}s`;
}

/** Time per step as Keras prints it: `48ms/step`, `2s/step`, `850us/step`. */
function formatPerStep(seconds: number): string {
  if (seconds >= 1) return `${Math.round(seconds)}s/step`;
  if (seconds >= 1e-3) return `${Math.round(seconds * 1e3)}ms/step`;
  return `${Math.round(seconds * 1e6)}us/step`;
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/**
 * Keras-style progress on a terminal, drawn from the event feed: `Epoch 3/10`, then a bar
 * `412/938 [=========>....] - ETA: 12s - loss: 0.3100 - accuracy: 0.8900` rewritten in
 * place, then the epoch's summary with validation metrics. Loss and accuracy on the bar are
 * running means over the epoch's steps (weighted by batch size), as Keras shows them. ETA
 * and step times come from the events' own `time`, so a replayed log draws the same bar.
 * Other events (workers, checkpoints, skips, early stop, the end) print as lines above it.
 */
export class ProgressView {
  private readonly out: TerminalStream;
  private readonly barWidth: number;
  private readonly minRedrawMs: number;
  private readonly maxSkipLines: number;
  private readonly now: () => number;

  private stepsPerEpoch = 0;
  private epochs = 0;
  private epoch = 0;
  private stepsInEpoch = 0;
  private done = 0;
  private epochStartMs = 0;
  private lastStepMs = 0;
  private lossSum = 0;
  private correctSum = 0;
  private seen = 0;
  /** A bar line is on screen without its newline. */
  private barShown = false;
  private lastDrawWallMs = -Infinity;
  private skips = 0;
  /** Width of the bar as last drawn; the epoch's summary keeps it. */
  private width = 30;
  private readonly unknownSeen = new Map<string, number>();

  constructor(options: ProgressOptions) {
    this.out = options.out;
    this.barWidth = options.barWidth ?? 30;
    this.width = this.barWidth;
    this.minRedrawMs = options.minRedrawMs ?? 100;
    this.maxSkipLines = options.maxSkipLines ?? 5;
    this.now = options.now ?? Date.now;
  }

  /** Draws what one line of the feed means; lines that are not drover events mostly pass by. */
  handle(parsed: ParsedLine): void {
    if (parsed.kind === 'event') this.onEvent(parsed.event);
    else if (parsed.kind === 'record') this.onRecord(parsed.record);
    else if (parsed.kind === 'unknown') {
      // An event this version has no view for (a newer producer, a one-off notice): its
      // message shows when it is a warning, or the first few times at info level.
      const seen = (this.unknownSeen.get(parsed.name) ?? 0) + 1;
      this.unknownSeen.set(parsed.name, seen);
      if ((parsed.record.level ?? 30) >= 40 || seen <= UNKNOWN_EVENT_LINES) this.onRecord(parsed.record);
    }
  }

  /** Ends a bar left open (the run stopped mid-epoch) so the shell prompt starts clean. */
  finish(): void {
    if (this.barShown) {
      this.out.write('\n');
      this.barShown = false;
    }
  }

  private onEvent(e: DroverEvent): void {
    switch (e.event) {
      case 'backend':
        this.print(`Compute backend: ${e.description} (${e.reason})`);
        break;
      case 'job_start':
        this.stepsPerEpoch = e.stepsPerEpoch;
        this.epochs = e.epochs;
        this.print(
          `Job ${e.job}: ${e.model} (${e.params.toLocaleString('en-US')} params) on ${e.dataset}, ` +
            `${e.trainSize.toLocaleString('en-US')} train / ${e.valSize.toLocaleString('en-US')} validation samples, ` +
            `${e.epochs} epochs of ${e.stepsPerEpoch} steps, batch ${e.batchSize}, ${optimizerLabel(e.optimizer)}, ` +
            `${e.mode} on ${e.backend}` +
            (e.resumedFrom ? `, resumed after epoch ${e.resumedFrom.epoch} (step ${e.resumedFrom.step})` : ''),
        );
        if (e.classCounts) this.print(`Classes (training samples): ${classList(e.classNames, e.classCounts)}`);
        break;
      case 'epoch_start':
        this.startEpoch(e.epoch, e.epochs, e.steps, eventTimeMs(e) ?? this.now());
        break;
      case 'step':
        this.onStep(e);
        break;
      case 'epoch':
        this.onEpochEnd(e);
        break;
      case 'evaluation':
        this.print(
          `Evaluation on ${e.split} (${e.n.toLocaleString('en-US')} samples) - loss: ${formatMetric(e.loss)} - accuracy: ${formatMetric(e.accuracy)}`,
        );
        break;
      case 'checkpoint':
        this.print(`Checkpoint saved: ${e.path} (epoch ${e.epoch}, step ${e.step})`);
        break;
      case 'early_stop':
        this.print(
          `Early stopping after epoch ${e.epoch}: ${e.monitor} has not improved since epoch ${e.bestEpoch} ` +
            `(best ${formatMetric(e.best)})${e.restored ? '; best weights restored' : ''}`,
        );
        break;
      case 'data_skip':
        this.skips++;
        if (this.skips <= this.maxSkipLines) {
          this.print(`Skipped sample ${e.path} (${e.source}): ${e.reason} [${e.code}]`);
          if (this.skips === this.maxSkipLines) this.print('Further skipped samples are counted, not shown (see the JSON log).');
        }
        break;
      case 'worker_join':
        this.print(`Worker ${e.worker} joined${e.address ? ` from ${e.address}` : ''}${e.backend ? ` (${e.backend})` : ''}`);
        break;
      case 'worker_leave':
        this.print(`Worker ${e.worker} left${e.reason ? `: ${e.reason}` : ''}`);
        break;
      case 'worker_fail':
        this.print(
          `Worker ${e.worker} failed${e.step !== undefined ? ` at step ${e.step}` : ''}${e.reason ? `: ${e.reason}` : ''}; its shard is reassigned`,
        );
        break;
      case 'job_end': {
        const parts = [`${e.epochs} epochs`, `${e.steps} steps`, formatDuration(e.seconds)];
        if (e.testAccuracy !== undefined) parts.push(`test accuracy ${formatMetric(e.testAccuracy)}`);
        if (this.skips > 0) parts.push(`${this.skips} samples skipped`);
        let line = `Job ${e.status}: ${parts.join(', ')}`;
        if (e.modelDir) line += `; model saved to ${e.modelDir}`;
        if (e.error) line += `; error: ${e.error}${e.code ? ` [${e.code}]` : ''}`;
        this.print(line);
        break;
      }
    }
  }

  private onRecord(record: LogRecord): void {
    if (typeof record.msg !== 'string' || record.msg === '') return;
    const level = record.level ?? 30;
    const prefix = level >= 50 ? 'error: ' : level >= 40 ? 'warning: ' : '';
    const err = record.err as { message?: unknown } | undefined;
    const detail = err && typeof err.message === 'string' && err.message !== record.msg ? ` (${err.message})` : '';
    this.print(prefix + record.msg + detail);
  }

  private startEpoch(epoch: number, epochs: number, steps: number, atMs: number): void {
    this.finish();
    this.epoch = epoch;
    this.epochs = epochs;
    this.stepsInEpoch = steps;
    this.done = 0;
    this.epochStartMs = atMs;
    this.lastStepMs = atMs;
    this.lossSum = 0;
    this.correctSum = 0;
    this.seen = 0;
    this.out.write(`Epoch ${epoch}/${epochs}\n`);
    this.draw(this.barLine(), true);
  }

  private onStep(e: StepEvent): void {
    const at = eventTimeMs(e) ?? this.now();
    // A feed that starts mid-epoch (or a producer without epoch_start) still gets a bar.
    if (e.epoch !== this.epoch) {
      const steps = this.stepsPerEpoch > 0 ? this.stepsPerEpoch : e.stepInEpoch;
      this.startEpoch(e.epoch, Math.max(this.epochs, e.epoch), steps, at);
    }
    this.done = e.stepInEpoch;
    this.stepsInEpoch = Math.max(this.stepsInEpoch, e.stepInEpoch);
    this.lastStepMs = at;
    this.lossSum += e.loss * e.n;
    this.correctSum += e.accuracy * e.n;
    this.seen += e.n;
    const last = this.done === this.stepsInEpoch;
    this.draw(this.barLine(), last);
  }

  private onEpochEnd(e: EpochEvent): void {
    if (e.epoch !== this.epoch) this.startEpoch(e.epoch, e.epochs, this.stepsPerEpoch || 1, eventTimeMs(e) ?? this.now());
    const steps = Math.max(this.done, 1);
    const metrics = [`loss: ${formatMetric(e.loss)}`, `accuracy: ${formatMetric(e.accuracy)}`];
    if (e.valLoss !== undefined) metrics.push(`val_loss: ${formatMetric(e.valLoss)}`);
    if (e.valAccuracy !== undefined) metrics.push(`val_accuracy: ${formatMetric(e.valAccuracy)}`);
    metrics.push(`lr: ${Number(e.lr.toPrecision(4))}`);
    const timing = `${formatDuration(e.seconds)} ${formatPerStep(e.seconds / steps)}`;
    const counter = `${this.done}/${this.stepsInEpoch}`;
    const line = this.fit(counter, [timing, ...metrics], true);
    this.draw(line, true);
    this.out.write('\n');
    this.barShown = false;
  }

  private barLine(): string {
    const metrics: string[] = [];
    if (this.done < this.stepsInEpoch) {
      const elapsed = (this.lastStepMs - this.epochStartMs) / 1000;
      const eta = this.done > 0 ? (elapsed / this.done) * (this.stepsInEpoch - this.done) : undefined;
      metrics.push(`ETA: ${eta === undefined ? '?' : formatEta(eta)}`);
    } else {
      metrics.push(formatDuration((this.lastStepMs - this.epochStartMs) / 1000));
    }
    if (this.seen > 0) {
      metrics.push(`loss: ${formatMetric(this.lossSum / this.seen)}`, `accuracy: ${formatMetric(this.correctSum / this.seen)}`);
    }
    const width = String(this.stepsInEpoch).length;
    return this.fit(`${String(this.done).padStart(width)}/${this.stepsInEpoch}`, metrics, false);
  }

  /**
   * `counter [bar] - m1 - m2`. A bar being redrawn shrinks and is cut so it never wraps
   * (a wrapped line cannot be redrawn with a carriage return); the final line of an epoch
   * keeps the bar's width and all its metrics, wrapping if it must.
   */
  private fit(counter: string, metrics: string[], complete: boolean): string {
    const tail = metrics.map((m) => ` - ${m}`).join('');
    const columns = this.out.columns && this.out.columns > 0 ? this.out.columns : 80;
    if (!complete) {
      const room = columns - 1 - counter.length - 3 - tail.length;
      this.width = Math.max(10, Math.min(this.barWidth, room));
    }
    const width = this.width;
    const filled = complete || this.stepsInEpoch === 0 ? width : Math.floor((width * this.done) / this.stepsInEpoch);
    let bar: string;
    if (filled >= width) bar = '='.repeat(width);
    else if (filled === 0) bar = '.'.repeat(width);
    else bar = '='.repeat(filled - 1) + '>' + '.'.repeat(width - filled);
    const line = `${counter} [${bar}]${tail}`;
    return !complete && line.length > columns - 1 ? line.slice(0, columns - 1) : line;
  }

  private draw(line: string, force: boolean): void {
    const wall = this.now();
    if (!force && wall - this.lastDrawWallMs < this.minRedrawMs) return;
    this.lastDrawWallMs = wall;
    this.out.write(`\r${line}${CLEAR_LINE}`);
    this.barShown = true;
  }

  /** A line above the bar: clear the bar, print, draw the bar again below. */
  private print(text: string): void {
    const midEpoch = this.barShown;
    if (midEpoch) this.out.write(`\r${CLEAR_LINE}`);
    this.out.write(`${text}\n`);
    this.barShown = false;
    if (midEpoch) this.draw(this.barLine(), true);
  }
}

function optimizerLabel(optimizer: string | Record<string, unknown>): string {
  if (typeof optimizer === 'string') return optimizer;
  const { name, ...rest } = optimizer;
  const args = Object.entries(rest)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
  return `${String(name ?? 'optimizer')}(${args})`;
}

/**
 * A Writable that pino (or anything writing JSON lines) writes to, and that draws the
 * progress view on `out`. Lines may arrive split across writes; the last one is kept until
 * its newline. Ending the stream closes an open bar line; it never ends `out`.
 */
export class ProgressStream extends Writable {
  readonly view: ProgressView;
  private pending = '';

  constructor(options: ProgressOptions) {
    super({ decodeStrings: false });
    this.view = new ProgressView(options);
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      const text = this.pending + (typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      const lines = text.split('\n');
      this.pending = lines.pop()!;
      for (const line of lines) this.view.handle(parseLogLine(line));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.pending !== '') this.view.handle(parseLogLine(this.pending));
    this.pending = '';
    this.view.finish();
    callback();
  }
}

/** Classes shown by name on the console; the log keeps them all. */
const CLASSES_SHOWN = 20;

function classList(names: readonly string[], counts: readonly number[]): string {
  const shown = names.slice(0, CLASSES_SHOWN).map((name, i) => `${name} ${counts[i] ?? 0}`);
  return shown.join(', ') + (names.length > CLASSES_SHOWN ? `, ... ${names.length - CLASSES_SHOWN} more` : '');
}
