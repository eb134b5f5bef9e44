import test from 'ava';
import type { ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { ConfigError } from '../src/errors.ts';
import { startDashboard } from '../src/telemetry/dashboard.ts';
import type { Dashboard } from '../src/telemetry/dashboard.ts';
import { startDashboardThread } from '../src/telemetry/dashboard-thread.ts';
import { appendRunLog, syntheticRunEvents, writeRunLog } from './helpers/run-log.ts';

const CHROMIUM = process.env.DROVER_CHROMIUM ?? '/usr/bin/chromium';
const WAIT_MS = 20_000;

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-dashboard-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function dashboard(t: ExecutionContext, logPath: string): Promise<Dashboard> {
  const d = await startDashboard({ logPath, port: 0, pollMs: 50 });
  t.teardown(() => d.close());
  return d;
}

/** Reads Server-Sent Events from the stream endpoint, one `update` at a time. */
async function openStream(t: ExecutionContext, url: string) {
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const response = await fetch(new URL('api/stream', url), { signal: controller.signal });
  t.is(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  return {
    async next(): Promise<{ event: string; data: any }> {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) return { event, data: JSON.parse(data) };
          continue;
        }
        if (Date.now() > deadline) throw new Error('no event in time');
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buffer += decoder.decode(value, { stream: true });
      }
    },
    /** Next update that satisfies `match`, skipping others. */
    async until(match: (data: any) => boolean): Promise<any> {
      for (;;) {
        const { event, data } = await this.next();
        if (event === 'update' && match(data)) return data;
      }
    },
  };
}

test('serves the page, its script, the charting library from node_modules and the chart specs', async (t) => {
  const dir = await tempDir(t);
  const d = await dashboard(t, join(dir, 'run.jsonl'));
  t.regex(d.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await fetch(d.url);
  t.is(page.status, 200);
  t.regex(page.headers.get('content-type')!, /text\/html/);
  const html = await page.text();
  for (const src of ['vendor/vega.min.js', 'vendor/vega-lite.min.js', 'dashboard.js', 'dashboard.css']) t.true(html.includes(src), src);
  for (const path of ['vendor/vega.min.js', 'vendor/vega-lite.min.js', 'dashboard.js']) {
    const response = await fetch(new URL(path, d.url));
    t.is(response.status, 200, path);
    t.regex(response.headers.get('content-type')!, /javascript/);
    t.true((await response.text()).length > 1000, path);
  }
  const charts = (await (await fetch(new URL('api/charts', d.url))).json()) as { charts: { name: string; dataset: string; spec: Record<string, unknown> }[] };
  t.deepEqual(
    charts.charts.map((c) => c.name),
    ['epoch-loss', 'epoch-accuracy', 'step-loss', 'learning-rate', 'throughput', 'step-time', 'confusion', 'membership'],
  );
  t.is((await fetch(new URL('nope', d.url))).status, 404);
  t.is((await fetch(new URL('../../etc/passwd', d.url))).status, 404);
  t.is((await fetch(d.url, { method: 'POST' })).status, 405);
});

test('the stream sends the log reduced to chart rows, then what is appended, and resets on truncation', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  const events = syntheticRunEvents({ epochs: 2, stepsPerEpoch: 6 });
  const half = events.findIndex((e) => e.event === 'epoch_start' && e.epoch === 2);
  await writeRunLog(logPath, events.slice(0, half));
  const d = await dashboard(t, logPath);
  const stream = await openStream(t, d.url);

  const first = await stream.next();
  t.is(first.event, 'update');
  t.true(first.data.reset, 'the first message resets the page');
  const loaded = await stream.until((u) => u.sizes.steps === 6);
  t.is(loaded.sizes.epochs, 2);
  t.is(loaded.summary.status, 'running');

  await appendRunLog(logPath, events.slice(half));
  const done = await stream.until((u) => u.summary.status === 'completed');
  t.is(done.sizes.steps, 12);
  t.is(done.sizes.confusion, 100);
  t.false(done.reset);

  await truncate(logPath, 0);
  await appendRunLog(logPath, events.slice(0, 3));
  const reset = await stream.until((u) => u.reset);
  t.true(reset.sizes.steps < 12);
});

test('close ends open streams and stops listening; a busy port is a clear error', async (t) => {
  const dir = await tempDir(t);
  const d = await startDashboard({ logPath: join(dir, 'run.jsonl'), port: 0 });
  const stream = await openStream(t, d.url);
  t.is((await stream.next()).event, 'update');
  await d.close();
  await t.throwsAsync(stream.until(() => false), { message: /stream ended|terminated/ });
  await t.throwsAsync(fetch(d.url));

  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as { port: number }).port;
  const busy = await t.throwsAsync(startDashboard({ logPath: 'x', port }), { instanceOf: ConfigError });
  t.is((busy as ConfigError).field, 'port');
  const bad = await t.throwsAsync(startDashboard({ logPath: 'x', port: 70000 }), { instanceOf: ConfigError });
  t.is((bad as ConfigError).field, 'port');
});

test('on a thread of its own the dashboard serves the same page and refuses a busy port with the same ConfigError', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  await writeRunLog(logPath, syntheticRunEvents({ epochs: 1, stepsPerEpoch: 4 }));
  const d = await startDashboardThread({ logPath, port: 0, pollMs: 50 });
  t.teardown(() => d.close());
  t.regex(d.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  t.is((await fetch(d.url)).status, 200);
  const stream = await openStream(t, d.url);
  const done = await stream.until((u) => u.summary.status === 'completed');
  t.is(done.sizes.steps, 4);
  t.is(await rawStatus(d.port, 'GET // HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'), 400);

  const busy = await t.throwsAsync(startDashboardThread({ logPath, port: d.port }), { instanceOf: ConfigError });
  t.is((busy as ConfigError).field, 'port');
  await d.close();
  await t.throwsAsync(fetch(d.url), undefined, 'closed: the thread stopped listening');
});

/** Sends raw bytes on a fresh connection and returns the status code of the reply (0: closed without one). */
async function rawStatus(port: number, request: string | Buffer): Promise<number> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(request);
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (text += chunk));
  await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, WAIT_MS))]);
  socket.destroy();
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
}

test('malformed requests, foreign Host headers and odd methods get a 4xx and never stop the server', async (t) => {
  const dir = await tempDir(t);
  const d = await dashboard(t, join(dir, 'run.jsonl'));
  const cases: [string, string | Buffer][] = [
    ['GET //', 'GET // HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['GET ///etc/passwd', 'GET ///etc/passwd HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['absolute form', 'GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['asterisk form', 'OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['bad escape', 'GET /%E0%A4%A HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['encoded NUL', 'GET /dashboard.js%00 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['prototype key', 'GET /__proto__ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['DNS rebinding Host', 'GET / HTTP/1.1\r\nHost: attacker.example:8377\r\nConnection: close\r\n\r\n'],
    ['Host with userinfo', 'GET / HTTP/1.1\r\nHost: localhost@evil\r\nConnection: close\r\n\r\n'],
    ['no Host (HTTP/1.0)', 'GET / HTTP/1.0\r\n\r\n'],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil\r\nConnection: close\r\n\r\n'],
    ['DELETE', 'DELETE / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['unknown method', 'BREW / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'],
    ['header without colon', 'GET / HTTP/1.1\r\nHost: localhost\r\nnonsense\r\n\r\n'],
    ['control byte in header', 'GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01b\r\n\r\n'],
    ['oversized header', `GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])],
    ['bad version', 'GET / HTTP/9.9\r\nHost: localhost\r\n\r\n'],
    ['bad chunked body', 'POST /api/stream HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
  ];
  for (const [name, request] of cases) {
    const status = await rawStatus(d.port, request);
    t.true(status >= 400 && status < 500, `${name}: got ${status}`);
  }
  // Names the server answers to, with and without a port.
  for (const host of ['localhost', `127.0.0.1:${d.port}`, `[::1]:${d.port}`, 'LOCALHOST.']) {
    t.is(await rawStatus(d.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), 200, host);
  }
  // A connection dropped halfway through a request or a stream leaves the server serving.
  const half = connect(d.port, '127.0.0.1');
  half.on('error', () => {});
  await once(half, 'connect');
  half.write('GET /api/stream HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await once(half, 'data');
  half.resetAndDestroy();
  t.is((await fetch(d.url)).status, 200, 'still serving after all of it');
});

// ---- In a real browser: Debian's chromium driven by playwright-core. ----

let browser: Browser | undefined;

test.before(async () => {
  if (!existsSync(CHROMIUM)) return;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Scroll bars as a user's browser draws them: a page that grows one gets narrower.
    ignoreDefaultArgs: ['--hide-scrollbars'],
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

test.after.always(async () => {
  await browser?.close();
});

/** Opens the page; `errors` collects what the page logs as errors or throws. */
async function openPage(t: ExecutionContext, url: string): Promise<{ page: Page; errors: string[] }> {
  if (!browser) throw new Error(`chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set DROVER_CHROMIUM`);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  t.teardown(() => page.close());
  // Functions evaluated in the page come from tsx, which wraps named functions in __name().
  await page.addInitScript('globalThis.__name = (f) => f');
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.goto(url);
  return { page, errors };
}

/** Marks Vega drew into a chart: line paths with many points, or rect cells. */
async function marks(page: Page, chart: string, selector: string): Promise<{ count: number; longest: number }> {
  return page.$$eval(`#chart-${chart} svg ${selector}`, (paths) => ({
    count: paths.length,
    longest: Math.max(0, ...paths.map((p) => (p.getAttribute('d') ?? '').split(/[LM]/).length)),
  }));
}

/** Where a chart's SVG, its title and its axis labels lie, for layout checks. */
interface ChartLayoutReport {
  name: string;
  card: { left: number; right: number };
  svg: { left: number; right: number; top: number; bottom: number };
  titles: { text: string; left: number; right: number; top: number; bottom: number }[];
  /** Visible labels of the x axis, left to right. */
  xLabels: { text: string; left: number; right: number }[];
}

async function chartLayouts(page: Page): Promise<ChartLayoutReport[]> {
  return page.$$eval('figure.card', (cards) =>
    cards.map((card) => {
      const svg = card.querySelector('svg')!;
      const box = (el: typeof card) => el.getBoundingClientRect();
      // No DOM lib in this project's types: the page's own getComputedStyle.
      const style = (el: typeof card) => (globalThis as unknown as { getComputedStyle(e: typeof card): { opacity: string } }).getComputedStyle(el);
      const titles = [...svg.querySelectorAll('g.role-title text')].map((el) => ({ text: el.textContent ?? '', ...box(el).toJSON() }));
      const xAxis = [...svg.querySelectorAll('g.role-axis')].find((g) => /^X-axis/.test(g.getAttribute('aria-label') ?? ''));
      const xLabels = [...(xAxis?.querySelectorAll('g.role-axis-label text') ?? [])]
        .filter((el) => Number(style(el).opacity) > 0 && el.getAttribute('opacity') !== '0')
        .map((el) => ({ text: el.textContent ?? '', left: box(el).left, right: box(el).right }))
        .sort((a, b) => a.left - b.left);
      return { name: card.getAttribute('data-chart')!, card: box(card).toJSON(), svg: box(svg).toJSON(), titles, xLabels };
    }),
  );
}

/** Every chart fits its card, its title is drawn whole inside it, and no two x labels touch. */
function checkLayouts(t: ExecutionContext, layouts: ChartLayoutReport[], when: string): void {
  for (const c of layouts) {
    t.true(c.svg.right <= c.card.right + 1, `${when}: ${c.name} is wider than its card (${c.svg.right} > ${c.card.right})`);
    t.true(c.titles.length > 0 && c.titles[0]!.text.length > 0, `${when}: ${c.name} has a title`);
    for (const title of c.titles) {
      t.false(title.text.includes('…'), `${when}: ${c.name} title cut: ${title.text}`);
      t.true(title.left >= c.svg.left - 1 && title.right <= c.svg.right + 1 && title.top >= c.svg.top - 1, `${when}: ${c.name} title "${title.text}" lies outside its chart`);
      t.true(title.right <= c.card.right, `${when}: ${c.name} title "${title.text}" is clipped by its card`);
    }
    // The confusion matrix's class labels are slanted: their boxes overlap, the text does not.
    for (let i = 1; c.name !== 'confusion' && i < c.xLabels.length; i++) {
      t.true(c.xLabels[i]!.left >= c.xLabels[i - 1]!.right + 2, `${when}: ${c.name} x labels "${c.xLabels[i - 1]!.text}" and "${c.xLabels[i]!.text}" run together`);
    }
  }
}

test.serial('in Chromium the page draws the curves of a live run and follows appended events', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  const events = syntheticRunEvents({ epochs: 4, stepsPerEpoch: 30 });
  const cut = events.findIndex((e) => e.event === 'epoch_start' && e.epoch === 3);
  await writeRunLog(logPath, events.slice(0, cut));
  const d = await dashboard(t, logPath);
  const { page, errors } = await openPage(t, d.url);

  // Two epochs in: two points per split on the epoch curves, 60 steps on the step chart.
  await page.waitForSelector('#card-epoch-loss[data-points="4"]', { timeout: WAIT_MS });
  await page.waitForSelector('body[data-step="60"]', { timeout: WAIT_MS });
  t.is(await page.getAttribute('#card-step-loss', 'data-points'), '60');
  t.is(await page.textContent('#status'), 'running');
  t.is(await page.textContent('#tile-epoch'), '2 / 4');
  t.is(await page.textContent('#tile-step'), '60');
  const epochLines = await marks(page, 'epoch-loss', 'g.mark-line.role-mark path');
  t.is(epochLines.count, 2, 'a train and a validation line');
  t.true(epochLines.longest >= 2);
  const stepLine = await marks(page, 'step-loss', 'g.mark-line.role-mark path');
  t.true(stepLine.longest >= 60, `step loss line has ${stepLine.longest} points`);
  const areas = await marks(page, 'step-time', 'g.mark-area.role-mark path');
  t.is(areas.count, 4, 'one area per phase');
  const members = await marks(page, 'membership', 'g.mark-rect.role-mark path');
  t.is(members.count, 4, 'three workers, one of them twice after its failure');
  t.is(await page.getAttribute('#card-confusion', 'data-points'), '0');
  t.true(await page.$eval('#card-confusion', (el) => el.classList.contains('empty')));
  t.true((await marks(page, 'learning-rate', 'g.mark-line.role-mark path')).longest >= 60, 'the learning-rate chart draws every step');
  // The raw and the smoothed loss are named in a legend.
  t.deepEqual(await page.$$eval('#chart-step-loss g.role-legend-label text', (els) => els.map((e) => e.textContent)), ['logged', 'smoothed']);
  // An empty chart's legend does not sit under its note.
  t.is(await page.$eval('#chart-confusion g.role-legend', (el) => (globalThis as unknown as { getComputedStyle(e: typeof el): { visibility: string } }).getComputedStyle(el).visibility), 'hidden');
  // At 1400 x 1000, as first drawn: nothing clipped, no title cut, no labels run together.
  await page.screenshot({ path: join(tmpdir(), 'drover-dashboard-live.png'), fullPage: true });
  checkLayouts(t, await chartLayouts(page), 'first draw');

  await appendRunLog(logPath, events.slice(cut));
  await page.waitForSelector('body[data-status="completed"]', { timeout: WAIT_MS });
  await page.waitForSelector('#card-epoch-loss[data-points="8"]', { timeout: WAIT_MS });
  t.is(await page.getAttribute('#card-step-loss', 'data-points'), '120');
  t.is(await page.textContent('#tile-epoch'), '4 / 4');
  t.is(await page.textContent('#status'), 'completed');
  t.true((await marks(page, 'epoch-loss', 'g.mark-line.role-mark path')).longest >= 4);
  t.true((await marks(page, 'step-loss', 'g.mark-line.role-mark path')).longest >= 120);
  t.is((await marks(page, 'confusion', 'g.mark-rect.role-mark path')).count, 100, 'a 10 x 10 confusion matrix');
  t.regex((await page.textContent('#chart-confusion g.role-title'))!, /Confusion matrix, test split/, 'the matrix names its split');
  // Workers present to the end stay 'active' (green) once the job has ended.
  t.deepEqual(await page.$$eval('#chart-membership g.mark-rect.role-mark path', (els) => els.map((e) => e.getAttribute('fill'))).then((fills) => fills.filter((f) => f === '#2ca02c').length), 3);
  checkLayouts(t, await chartLayouts(page), 'completed');
  t.regex((await page.textContent('#notices'))!, /The job completed\. Test accuracy 9\d\.\d\d%/);
  await page.screenshot({ path: join(tmpdir(), 'drover-dashboard.png'), fullPage: true });
  t.deepEqual(errors, [], 'no errors in the page');
});

test.serial('in Chromium the page waits for a log that does not exist yet', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'later.jsonl');
  const d = await dashboard(t, logPath);
  const { page, errors } = await openPage(t, d.url);
  await page.waitForSelector('body[data-status="waiting"]', { timeout: WAIT_MS });
  t.is(await page.textContent('#status'), 'waiting for log');
  await writeFile(logPath, '');
  await appendRunLog(logPath, syntheticRunEvents({ epochs: 1, stepsPerEpoch: 5, evaluation: false, finished: false }));
  await page.waitForSelector('#card-epoch-accuracy[data-points="2"]', { timeout: WAIT_MS });
  t.is(await page.getAttribute('#card-step-loss', 'data-points'), '5');
  t.is(await page.textContent('#status'), 'running');
  // Five logged steps: the smoothed line follows them instead of flattening to their mean.
  const [logged, smoothed] = await page.$$eval('#chart-step-loss g.mark-line.role-mark path', (els) => els.map((e) => e.getAttribute('d')));
  t.is(smoothed, logged);
  t.deepEqual(errors, [], 'no errors in the page');
});

test.serial('in Chromium a long run keeps its step and time labels apart and every title whole at 1400 x 1000', async (t) => {
  const dir = await tempDir(t);
  const logPath = join(dir, 'run.jsonl');
  await writeRunLog(logPath, syntheticRunEvents({ epochs: 3, stepsPerEpoch: 400 }));
  const d = await dashboard(t, logPath);
  const { page, errors } = await openPage(t, d.url);
  await page.waitForSelector('body[data-status="completed"]', { timeout: WAIT_MS });
  await page.waitForSelector('body[data-step="1200"]', { timeout: WAIT_MS });
  await page.screenshot({ path: join(tmpdir(), 'drover-dashboard-long.png'), fullPage: true });
  const layouts = await chartLayouts(page);
  const steps = layouts.find((c) => c.name === 'step-loss')!;
  t.true(steps.xLabels.length >= 5, `step axis labels: ${steps.xLabels.map((l) => l.text).join(' ')}`);
  t.true(layouts.find((c) => c.name === 'membership')!.xLabels.length >= 3);
  checkLayouts(t, layouts, 'long run');
  t.deepEqual(errors, [], 'no errors in the page');
});
