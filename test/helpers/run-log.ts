import { appendFile, writeFile } from 'node:fs/promises';

/**
 * A realistic synthetic training log, as the coordinator writes it: backend, job start,
 * workers joining, steps with falling loss and per-worker throughput, epochs with
 * validation metrics, checkpoints, a data skip, a worker that fails and one that rejoins,
 * a final test evaluation with a confusion matrix, and the job's end. Deterministic.
 */

export const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export interface RunLogOptions {
  epochs?: number;
  stepsPerEpoch?: number;
  /** Worker ids; one worker means mode 'single' and no per-worker breakdown. */
  workers?: string[];
  classNames?: string[];
  batchSize?: number;
  /** Time of the first line, epoch ms. */
  startMs?: number;
  /** Simulated wall time of one step. */
  stepMs?: number;
  /** Make the second worker fail (and rejoin) during epoch 2, when there are two or more. */
  workerFailure?: boolean;
  /** Emit the final test evaluation. */
  evaluation?: boolean;
  /** Emit job_end (a finished run); false leaves the run mid-flight. */
  finished?: boolean;
  job?: string;
  seed?: number;
}

type Line = Record<string, unknown>;

/** Small deterministic PRNG (mulberry32) so logs are identical run to run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round = (x: number, digits = 4): number => Number(x.toFixed(digits));

/** The events of one run, in order, each a pino-shaped object with an ISO `time`. */
export function syntheticRunEvents(options: RunLogOptions = {}): Line[] {
  const epochs = options.epochs ?? 4;
  const stepsPerEpoch = options.stepsPerEpoch ?? 25;
  const workers = options.workers ?? ['worker-0', 'worker-1', 'worker-2'];
  const classNames = options.classNames ?? FASHION_CLASSES;
  const batchSize = options.batchSize ?? 128;
  const stepMs = options.stepMs ?? 400;
  const job = options.job ?? 'fashion-cnn-20250101';
  const random = prng(options.seed ?? 7);
  let now = options.startMs ?? Date.parse('2025-01-01T12:00:00.000Z');
  const lines: Line[] = [];
  const push = (fields: Line, level = 30): void => {
    lines.push({ level, time: new Date(now).toISOString(), pid: 4242, msg: String(fields.event), ...fields });
  };
  const distributed = workers.length > 1;

  push({ event: 'backend', backend: 'wasm', description: 'WebAssembly (SIMD, 2 threads)', reason: 'no tfjs-node binding installed' });
  push({
    event: 'job_start',
    job,
    mode: distributed ? 'distributed' : 'single',
    backend: 'wasm',
    model: 'cnn-small',
    params: 225034,
    dataset: 'fashion-mnist',
    classNames,
    trainSize: stepsPerEpoch * batchSize,
    valSize: 10000,
    epochs,
    batchSize,
    optimizer: 'adam(lr=0.001)',
    stepsPerEpoch,
  });
  if (distributed) {
    for (const [i, worker] of workers.entries()) {
      now += 150;
      push({ event: 'worker_join', worker, address: `10.0.0.${11 + i}:7001`, backend: 'wasm' });
    }
  }

  let step = 0;
  let active = [...workers];
  const failing = options.workerFailure !== false && workers.length >= 2 ? workers[1]! : undefined;
  let bestVal = Infinity;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    now += 20;
    push({ event: 'epoch_start', epoch, epochs, steps: stepsPerEpoch });
    let lossSum = 0;
    let correctSum = 0;
    let seen = 0;
    for (let inEpoch = 1; inEpoch <= stepsPerEpoch; inEpoch++) {
      step++;
      const progress = step / (epochs * stepsPerEpoch);
      const loss = Math.max(0.05, 1.9 * Math.exp(-3.2 * progress) + 0.25 + (random() - 0.5) * 0.12);
      const accuracy = Math.min(1, Math.max(0, 0.95 - 0.6 * Math.exp(-3.5 * progress) + (random() - 0.5) * 0.05));
      const dataWaitMs = round(8 + random() * 12, 1);
      const computeMs = round(stepMs * 0.7 + random() * 30, 1);
      const transferMs = distributed ? round(25 + random() * 15, 1) : 0;
      const reduceMs = distributed ? round(6 + random() * 4, 1) : 0;
      const thisStepMs = dataWaitMs + computeMs + transferMs + reduceMs;
      now += Math.round(thisStepMs);
      const event: Line = {
        event: 'step',
        epoch,
        step,
        stepInEpoch: inEpoch,
        loss: round(loss),
        accuracy: round(accuracy),
        lr: 0.001,
        imgPerSec: round((batchSize / thisStepMs) * 1000, 1),
        n: batchSize,
        dataWaitMs,
        computeMs,
        transferMs,
        reduceMs,
        stepMs: round(thisStepMs, 1),
      };
      if (distributed) {
        const share = Math.floor(batchSize / active.length);
        event.workers = active.map((worker, i) => {
          const n = i === 0 ? batchSize - share * (active.length - 1) : share;
          const speed = 1 + 0.25 * workers.indexOf(worker);
          const ms = round((computeMs / speed) * (0.9 + random() * 0.2), 1);
          return { worker, n, imgPerSec: round((n / ms) * 1000, 1), computeMs: ms };
        });
      }
      push(event);
      lossSum += loss * batchSize;
      correctSum += accuracy * batchSize;
      seen += batchSize;

      if (failing !== undefined && epoch === 2 && inEpoch === Math.ceil(stepsPerEpoch / 3)) {
        now += 3000;
        push({ event: 'worker_fail', worker: failing, address: '10.0.0.12:7001', reason: 'deadline exceeded (5000 ms)', step }, 40);
        active = active.filter((w) => w !== failing);
      }
      if (failing !== undefined && epoch === 2 && inEpoch === Math.ceil((2 * stepsPerEpoch) / 3)) {
        now += 500;
        push({ event: 'worker_join', worker: failing, address: '10.0.0.12:7001', backend: 'wasm' });
        active = workers.filter((w) => active.includes(w) || w === failing);
      }
      if (epoch === 1 && inEpoch === 3) {
        push({ event: 'data_skip', source: 'train', path: 'train/sandal/0412.jpg', reason: 'Input buffer contains unsupported image format', code: 'DROVER_ERR_SAMPLE' }, 40);
      }
    }
    const trainLoss = lossSum / seen;
    const trainAcc = correctSum / seen;
    const valLoss = trainLoss * (1.05 + 0.03 * epoch) + (random() - 0.5) * 0.02;
    const valAccuracy = Math.min(1, trainAcc - 0.01 * epoch + (random() - 0.5) * 0.01);
    now += 1200;
    const seconds = round((stepsPerEpoch * stepMs * 1.1 + 1200) / 1000, 2);
    push({
      event: 'epoch',
      epoch,
      epochs,
      loss: round(trainLoss),
      accuracy: round(trainAcc),
      valLoss: round(valLoss),
      valAccuracy: round(valAccuracy),
      lr: 0.001,
      seconds,
      imgPerSec: round((stepsPerEpoch * batchSize) / seconds, 1),
    });
    if (valLoss < bestVal) {
      bestVal = valLoss;
      now += 80;
      push({ event: 'checkpoint', step, epoch, path: `runs/${job}/checkpoints/epoch-${epoch}`, bytes: 901234 });
    }
  }

  if (options.evaluation !== false) {
    now += 900;
    const k = classNames.length;
    const n = 10000;
    const perClass = Math.floor(n / k);
    const confusion = classNames.map((_, actual) => {
      const row = new Array<number>(k).fill(0);
      // Mostly right, with the confusions Fashion-MNIST is known for (shirt vs T-shirt, etc.).
      const hard = actual === 6 || actual === 0 || actual === 2 || actual === 4;
      const wrong = Math.round(perClass * (hard ? 0.18 : 0.04));
      row[actual] = perClass - wrong;
      const neighbour = actual === 6 ? 0 : actual === 0 ? 6 : actual === 2 ? 4 : actual === 4 ? 2 : (actual + 1) % k;
      row[neighbour]! += Math.ceil(wrong * 0.7);
      row[(actual + 3) % k]! += wrong - Math.ceil(wrong * 0.7);
      return row;
    });
    const correct = confusion.reduce((sum, row, i) => sum + row[i]!, 0);
    const total = confusion.flat().reduce((a, b) => a + b, 0);
    push({ event: 'evaluation', split: 'test', loss: 0.3412, accuracy: round(correct / total), n: total, classNames, confusion });
  }
  if (options.finished !== false) {
    now += 300;
    const evaluation = lines.find((l) => l.event === 'evaluation');
    push({
      event: 'job_end',
      status: 'completed',
      epochs,
      steps: step,
      seconds: round((now - (options.startMs ?? Date.parse('2025-01-01T12:00:00.000Z'))) / 1000, 1),
      ...(evaluation ? { testAccuracy: evaluation.accuracy } : {}),
      modelDir: `runs/${job}/model`,
    });
  }
  return lines;
}

/** JSON lines, each ending in a newline. */
export function toJsonLines(events: readonly Line[]): string {
  return events.map((e) => JSON.stringify(e) + '\n').join('');
}

export async function writeRunLog(path: string, events: readonly Line[]): Promise<void> {
  await writeFile(path, toJsonLines(events));
}

export async function appendRunLog(path: string, events: readonly Line[]): Promise<void> {
  await appendFile(path, toJsonLines(events));
}
