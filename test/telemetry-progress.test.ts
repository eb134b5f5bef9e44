import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ConfigError } from '../src/errors.ts';
import { parseLogLine } from '../src/telemetry/events.ts';
import { createRunFeed } from '../src/telemetry/feed.ts';
import { ProgressStream, ProgressView, formatEta, formatMetric } from '../src/telemetry/progress.ts';
import { syntheticRunEvents } from './helpers/run-log.ts';
import { FakeTty, frames } from './helpers/terminal.ts';

const T0 = Date.parse('2025-01-01T12:00:00.000Z');
const at = (ms: number): string => new Date(T0 + ms).toISOString();

/** Two epochs of ten steps, one step per second: ETAs and means are easy to check by hand. */
function handmadeRun(): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [
    {
      level: 30,
      time: at(0),
      event: 'job_start',
      job: 'tiny',
      mode: 'single',
      backend: 'wasm',
      model: 'cnn-small',
      params: 1234567,
      dataset: 'fashion-mnist',
      classNames: ['a', 'b'],
      trainSize: 320,
      valSize: 64,
      epochs: 2,
      batchSize: 32,
      optimizer: { name: 'adam', learningRate: 0.001 },
      stepsPerEpoch: 10,
    },
  ];
  let clock = 0;
  for (let epoch = 1; epoch <= 2; epoch++) {
    lines.push({ level: 30, time: at(clock), event: 'epoch_start', epoch, epochs: 2, steps: 10 });
    for (let k = 1; k <= 10; k++) {
      clock += 1000;
      lines.push({
        level: 30,
        time: at(clock),
        event: 'step',
        epoch,
        step: (epoch - 1) * 10 + k,
        stepInEpoch: k,
        loss: 1 - 0.05 * k,
        accuracy: 0.5 + 0.02 * k,
        lr: 0.001,
        imgPerSec: 32,
        n: 32,
        dataWaitMs: 1,
        computeMs: 900,
        transferMs: 0,
        reduceMs: 0,
      });
    }
    clock += 1200;
    lines.push({ level: 30, time: at(clock), event: 'epoch', epoch, epochs: 2, loss: 0.7, accuracy: 0.61, valLoss: 0.75, valAccuracy: 0.6, lr: 0.001, seconds: 11.2, imgPerSec: 28.6 });
  }
  lines.push({ level: 30, time: at(clock + 100), event: 'job_end', status: 'completed', epochs: 2, steps: 20, seconds: 23.5, testAccuracy: 0.6 });
  return lines;
}

function feed(view: ProgressView, lines: Record<string, unknown>[]): void {
  for (const line of lines) view.handle(parseLogLine(JSON.stringify(line)));
}

test('Keras number and ETA formats', (t) => {
  t.is(formatMetric(0.31), '0.3100');
  t.is(formatMetric(0.00012345), '1.2345e-4');
  t.is(formatEta(12.4), '12s');
  t.is(formatEta(62), '1:02');
  t.is(formatEta(3723), '1:02:03');
});

test('a terminal shows Epoch n/N, a bar with ETA and running means, then the epoch summary', (t) => {
  const tty = new FakeTty(100);
  const view = new ProgressView({ out: tty, minRedrawMs: 0 });
  feed(view, handmadeRun());
  view.finish();

  // Mid-epoch frame after 4 of 10 steps: 4 s elapsed, so 6 s to go; means of the 4 steps.
  t.true(
    frames(tty.output).includes(' 4/10 [===========>..................] - ETA: 6s - loss: 0.8750 - accuracy: 0.5500'),
    frames(tty.output).join('\n'),
  );
  t.deepEqual(tty.screen(), [
    'Job tiny: cnn-small (1,234,567 params) on fashion-mnist, 320 train / 64 validation samples, 2 epochs of 10 steps, batch 32, adam(learningRate=0.001), single on wasm',
    'Epoch 1/2',
    '10/10 [==============================] - 11s 1s/step - loss: 0.7000 - accuracy: 0.6100 - val_loss: 0.7500 - val_accuracy: 0.6000 - lr: 0.001',
    'Epoch 2/2',
    '10/10 [==============================] - 11s 1s/step - loss: 0.7000 - accuracy: 0.6100 - val_loss: 0.7500 - val_accuracy: 0.6000 - lr: 0.001',
    'Job completed: 2 epochs, 20 steps, 24s, test accuracy 0.6000',
  ]);
});

test('a message mid-epoch prints above the bar and the bar is drawn again below it', (t) => {
  const tty = new FakeTty(100);
  const view = new ProgressView({ out: tty, minRedrawMs: 0 });
  const run = handmadeRun();
  const fourth = run.findIndex((l) => l.event === 'step' && l.step === 4);
  run.splice(fourth + 1, 0, { level: 40, time: at(4500), event: 'worker_fail', worker: 'w1', reason: 'deadline exceeded', step: 4 });
  feed(view, run.slice(0, fourth + 2));
  t.deepEqual(tty.screen().slice(1), [
    'Epoch 1/2',
    'Worker w1 failed at step 4: deadline exceeded; its shard is reassigned',
    ' 4/10 [===========>..................] - ETA: 6s - loss: 0.8750 - accuracy: 0.5500',
  ]);
});

test('a narrow terminal gets a shorter bar and lines that never wrap', (t) => {
  const tty = new FakeTty(60);
  const view = new ProgressView({ out: tty, minRedrawMs: 0 });
  feed(view, handmadeRun());
  const drawn = frames(tty.output).filter((f) => f.includes('/10 [') && f.includes('ETA'));
  t.true(drawn.length >= 10);
  for (const frame of drawn) t.true(frame.length <= 59, `${frame.length}: ${frame}`);
  t.true(drawn.some((f) => /\[=+>\.+\]/.test(f)), 'some frame shows a partial bar');
});

test('redraws are throttled by the wall clock, but every epoch still ends with a full bar', (t) => {
  const tty = new FakeTty(100);
  const view = new ProgressView({ out: tty, minRedrawMs: 1000, now: () => 5000 });
  feed(view, handmadeRun());
  const steps = frames(tty.output).filter((f) => / \d+\/10 \[/.test(` ${f}`) && f.includes('ETA'));
  // The clock never moves: only the forced draws (epoch start) happen mid-epoch.
  t.true(steps.length <= 2, steps.join('\n'));
  t.is(tty.screen().filter((l) => l.startsWith('10/10 [==============================] - 11s')).length, 2);
});

test('skipped samples: the first few are shown, the rest counted in the final line', (t) => {
  const tty = new FakeTty(120);
  const view = new ProgressView({ out: tty, minRedrawMs: 0, maxSkipLines: 2 });
  const run = handmadeRun();
  const skips = [1, 2, 3, 4].map((i) => ({ level: 40, time: at(1500), event: 'data_skip', source: 'train', path: `img-${i}.jpg`, reason: 'corrupt JPEG', code: 'DROVER_ERR_SAMPLE' }));
  run.splice(3, 0, ...skips);
  feed(view, run);
  const screen = tty.screen();
  t.is(screen.filter((l) => l.startsWith('Skipped sample')).length, 2);
  t.true(screen.includes('Further skipped samples are counted, not shown (see the JSON log).'));
  t.is(screen.at(-1), 'Job completed: 2 epochs, 20 steps, 24s, test accuracy 0.6000, 4 samples skipped');
});

test('warnings and errors from plain log lines show; unknown info events only the first few times', (t) => {
  const tty = new FakeTty(100);
  const view = new ProgressView({ out: tty, minRedrawMs: 0 });
  const lines = [
    { level: 30, msg: 'coordinator listening on 0.0.0.0:7000' },
    { level: 40, msg: 'slow worker', err: { message: 'deadline 5000 ms' } },
    { level: 50, msg: 'cannot write checkpoint' },
    ...[1, 2, 3, 4, 5].map((i) => ({ level: 30, event: 'heartbeat', msg: `heartbeat ${i}` })),
    { level: 40, event: 'interrupt', msg: 'interrupted: stopping after the current step' },
    { level: 30, event: 'step', loss: 'bad' },
  ];
  feed(view, lines);
  t.deepEqual(tty.screen(), [
    'coordinator listening on 0.0.0.0:7000',
    'warning: slow worker (deadline 5000 ms)',
    'error: cannot write checkpoint',
    'heartbeat 1',
    'heartbeat 2',
    'heartbeat 3',
    'warning: interrupted: stopping after the current step',
  ]);
});

test('the progress stream takes lines split across writes and closes an open bar when it ends', async (t) => {
  const tty = new FakeTty(100);
  const stream = new ProgressStream({ out: tty, minRedrawMs: 0 });
  const text = handmadeRun()
    .slice(0, 6)
    .map((l) => JSON.stringify(l) + '\n')
    .join('');
  for (let i = 0; i < text.length; i += 37) stream.write(text.slice(i, i + 37));
  await new Promise<void>((resolve) => stream.end(resolve));
  t.true(tty.output.endsWith('\n'));
  t.is(tty.screen().at(-1), ' 4/10 [===========>..................] - ETA: 6s - loss: 0.8750 - accuracy: 0.5500');
});

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-feed-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function emitRun(logger: import('pino').Logger): void {
  for (const line of syntheticRunEvents({ epochs: 2, stepsPerEpoch: 5 })) {
    const { level, time, pid, msg, ...fields } = line;
    void time;
    void pid;
    if (level === 40) logger.warn(fields, String(msg));
    else logger.info(fields, String(msg));
  }
}

test('on a terminal the feed draws progress on stdout and writes JSON lines to the log file', async (t) => {
  const dir = await tempDir(t);
  const tty = new FakeTty(100);
  const logFile = join(dir, 'logs', 'run.jsonl');
  const feedHandle = await createRunFeed({ stdout: tty, logFile, env: {}, minRedrawMs: 0 });
  t.is(feedHandle.stdoutMode, 'progress');
  emitRun(feedHandle.logger);
  await feedHandle.close();
  t.false(tty.output.includes('{'), 'no JSON on the terminal');
  t.true(tty.screen().includes('Epoch 2/2'));
  const lines = (await readFile(logFile, 'utf8')).trim().split('\n');
  t.is(lines.length, syntheticRunEvents({ epochs: 2, stepsPerEpoch: 5 }).length);
  for (const line of lines) t.is(parseLogLine(line).kind, 'event', line);
  const first = JSON.parse(lines[0]!) as { time: string; pid: number; level: number };
  t.regex(first.time, /^\d{4}-\d\d-\d\dT/);
  t.is(first.pid, process.pid);
});

test('in a pipe the feed writes the same JSON lines to stdout and the log file', async (t) => {
  const dir = await tempDir(t);
  const pipe = new PassThrough();
  let out = '';
  pipe.on('data', (c: Buffer) => (out += c.toString()));
  const logFile = join(dir, 'run.jsonl');
  const feedHandle = await createRunFeed({ stdout: pipe, logFile, env: {} });
  t.is(feedHandle.stdoutMode, 'json');
  emitRun(feedHandle.logger);
  await feedHandle.close();
  t.is(out, await readFile(logFile, 'utf8'));
  t.true(out.split('\n').filter(Boolean).every((l) => parseLogLine(l).kind === 'event'));
});

test('CI gets JSON even on a terminal; progress can be forced either way', async (t) => {
  const ci = await createRunFeed({ stdout: new FakeTty(), env: { CI: 'true' } });
  t.is(ci.stdoutMode, 'json');
  await ci.close();
  const notCi = await createRunFeed({ stdout: new FakeTty(), env: { CI: 'false' } });
  t.is(notCi.stdoutMode, 'progress');
  await notCi.close();
  const never = await createRunFeed({ stdout: new FakeTty(), env: {}, progress: 'never' });
  t.is(never.stdoutMode, 'json');
  await never.close();
  const always = await createRunFeed({ stdout: new PassThrough(), env: {}, progress: 'always' });
  t.is(always.stdoutMode, 'progress');
  await always.close();
});

test('bad feed options are rejected naming the field; an unwritable log file rejects', async (t) => {
  const level = await t.throwsAsync(createRunFeed({ stdout: new PassThrough(), level: 'loud' }), { instanceOf: ConfigError });
  t.is((level as ConfigError).field, 'level');
  const unknown = await t.throwsAsync(createRunFeed({ stdout: new PassThrough(), colour: true } as never), { instanceOf: ConfigError });
  t.is((unknown as ConfigError).field, 'colour');
  const progress = await t.throwsAsync(createRunFeed({ stdout: new PassThrough(), progress: 'yes' as never }), { instanceOf: ConfigError });
  t.is((progress as ConfigError).field, 'progress');
  const envLevel = await t.throwsAsync(createRunFeed({ stdout: new PassThrough(), env: { DROVER_LOG_LEVEL: 'chatty' } }), { instanceOf: ConfigError });
  t.is((envLevel as ConfigError).field, 'DROVER_LOG_LEVEL');
  const dir = await tempDir(t);
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  await t.throwsAsync(createRunFeed({ stdout: new PassThrough(), logFile: join(file, 'run.jsonl') }));
});

test('appendLog keeps what the log file held', async (t) => {
  const dir = await tempDir(t);
  const logFile = join(dir, 'run.jsonl');
  await writeFile(logFile, '{"level":30,"msg":"before"}\n');
  const appended = await createRunFeed({ stdout: new PassThrough(), logFile, appendLog: true, env: {} });
  appended.logger.info('after');
  await appended.close();
  t.deepEqual(
    (await readFile(logFile, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['before', 'after'],
  );
  const truncated = await createRunFeed({ stdout: new PassThrough(), logFile, env: {} });
  truncated.logger.info('fresh');
  await truncated.close();
  t.deepEqual(
    (await readFile(logFile, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['fresh'],
  );
});
