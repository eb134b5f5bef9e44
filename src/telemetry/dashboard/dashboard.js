// The dashboard page: compiles the chart specs the server sends (Vega-Lite -> Vega) and
// streams rows into them from /api/stream. The server does the parsing and the reduction
// (RunState), so this file only draws. Tests read the data-* attributes it maintains.

const { vega, vegaLite } = window;

/** How each chart card explains itself while it has no rows. */
const EMPTY_NOTES = {
  'epoch-loss': 'Appears after the first epoch.',
  'epoch-accuracy': 'Appears after the first epoch.',
  'step-loss': 'Appears with the first step.',
  'learning-rate': 'Appears with the first step.',
  throughput: 'Appears with the first step.',
  'step-time': 'Appears with the first step.',
  membership: 'Appears when a worker joins (runs with workers).',
  confusion: 'Appears after an evaluation with a confusion matrix.',
};
const WIDE = new Set(['step-loss', 'membership']);
/** A confusion matrix of more classes than this gets the whole row. */
const WIDE_CONFUSION_CLASSES = 12;

const $ = (id) => document.getElementById(id);
const charts = [];
let updates = 0;
let latest;

function fixed(x, digits = 4) {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '-';
}

function percent(x) {
  return typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : '-';
}

function duration(seconds) {
  if (!(seconds >= 0)) return '-';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

async function createCharts() {
  const response = await fetch('api/charts');
  if (!response.ok) throw new Error(`GET api/charts: ${response.status}`);
  const { charts: definitions, logPath } = await response.json();
  setText('log-path', logPath);
  const main = $('charts');
  // Every card first: the grid's columns are final before any chart measures its width
  // (a chart measured alone in the grid got the whole row, then was clipped to its column).
  const cards = definitions.map((definition) => {
    const card = document.createElement('figure');
    card.className = `card empty${WIDE.has(definition.name) ? ' wide' : ''}`;
    card.id = `card-${definition.name}`;
    card.dataset.chart = definition.name;
    card.dataset.points = '0';
    const container = document.createElement('div');
    container.className = 'chart';
    container.id = `chart-${definition.name}`;
    const note = document.createElement('div');
    note.className = 'empty-note';
    note.textContent = EMPTY_NOTES[definition.name] ?? 'No data yet.';
    card.append(container, note);
    main.append(card);
    return { definition, card, container };
  });
  for (const { definition, card, container } of cards) {
    const spec = { ...definition.spec };
    const followsWidth = spec.width === 'container';
    // The card's own width, not the window's: Vega's 'container' width follows window resizes only.
    if (followsWidth) spec.width = Math.max(200, Math.floor(container.clientWidth));
    // Only errors: Vega-Lite warns about harmless layout choices (fit with a step height).
    const compiled = vegaLite.compile(spec, { logger: vega.logger(vega.Error) }).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'svg', container, hover: true });
    charts.push({ name: definition.name, dataset: definition.dataset, view, card, container, followsWidth, width: spec.width });
  }
  await Promise.all(charts.map((c) => c.view.runAsync()));
  // Columns change width with the window, a scroll bar, or a card turning wide: redraw to fit.
  const observer = new ResizeObserver(() => {
    for (const chart of charts) {
      if (!chart.followsWidth) continue;
      const width = Math.max(200, Math.floor(chart.container.clientWidth));
      if (width === chart.width) continue;
      chart.width = width;
      chart.view.width(width).runAsync();
    }
  });
  for (const chart of charts) observer.observe(chart.card);
}

/**
 * Applies one update from the server: after a reset everything goes; `replace` rewrites a
 * dataset; `upsert` rows replace the rows with the same key (a step bucket refined) or add.
 */
async function applyUpdate(update) {
  const touched = new Set();
  for (const chart of charts) {
    const { dataset, view } = chart;
    const replace = update.replace?.[dataset];
    const upsert = update.upsert?.[dataset];
    if (!update.reset && !replace && !(upsert && upsert.length > 0)) continue;
    const changes = vega.changeset();
    if (update.reset || replace) changes.remove(vega.truthy);
    else {
      const keys = new Set(upsert.map((row) => row.key));
      changes.remove((row) => keys.has(row.key));
    }
    // Each view gets its own copies: Vega's transforms annotate the rows they are given.
    const rows = replace ?? upsert ?? [];
    if (rows.length > 0) changes.insert(rows.map((row) => ({ ...row })));
    view.change(dataset, changes);
    touched.add(chart);
  }
  await Promise.all([...touched].map((chart) => chart.view.runAsync()));
  for (const chart of charts) {
    const points = update.sizes?.[chart.dataset] ?? 0;
    chart.card.dataset.points = String(points);
    chart.card.classList.toggle('empty', points === 0);
    if (chart.name === 'confusion') chart.card.classList.toggle('wide', points > WIDE_CONFUSION_CLASSES ** 2);
  }
  latest = update;
  renderSummary(update.summary, update.log);
  updates++;
  document.body.dataset.updates = String(updates);
}

function renderSummary(s, log) {
  const status = log?.missing ? 'waiting' : s.status;
  document.body.dataset.status = status;
  const badge = $('status');
  badge.dataset.status = status;
  badge.textContent = log?.missing ? 'waiting for log' : status;
  document.body.dataset.step = String(s.step ?? 0);
  document.body.dataset.epoch = String(s.epoch ?? 0);

  setText('job', s.job ?? (log?.missing ? 'waiting for the log file' : 'waiting for the run'));
  const parts = [];
  if (s.model) parts.push(`${s.model}${s.params ? ` (${s.params.toLocaleString('en-US')} params)` : ''}`);
  if (s.dataset) parts.push(`${s.dataset}${s.classes ? `, ${s.classes} classes` : ''}`);
  if (s.trainSize !== undefined) parts.push(`${s.trainSize.toLocaleString('en-US')} train / ${(s.valSize ?? 0).toLocaleString('en-US')} val`);
  if (s.batchSize) parts.push(`batch ${s.batchSize}`);
  if (s.optimizer) parts.push(s.optimizer);
  if (s.mode) parts.push(`${s.mode} on ${s.backend ?? '?'}`);
  setText('subtitle', parts.join(' · '));

  setText('tile-epoch', s.epoch ? `${s.epoch} / ${s.epochs ?? '?'}` : '-');
  setText('tile-step', s.step ? s.step.toLocaleString('en-US') : '-');
  setText('tile-loss', fixed(s.loss));
  setText('tile-accuracy', percent(s.accuracy));
  setText('tile-val-loss', fixed(s.valLoss));
  setText('tile-val-accuracy', percent(s.valAccuracy));
  setText('tile-best', s.bestValAccuracy !== undefined ? `best ${percent(s.bestValAccuracy)} (epoch ${s.bestValEpoch})` : 'last epoch');
  setText('tile-throughput', typeof s.imgPerSec === 'number' ? s.imgPerSec.toFixed(0) : '-');
  setText('tile-workers', s.workersSeen > 0 ? `${s.workersActive} / ${s.workersSeen}` : '-');
  setText('tile-failures', s.workerFailures > 0 ? `${s.workerFailures} failure${s.workerFailures > 1 ? 's' : ''}` : s.workersSeen > 0 ? 'active / seen' : '');
  const elapsed = s.seconds ?? (s.startedAt !== undefined && s.updatedAt !== undefined ? (s.updatedAt - s.startedAt) / 1000 : undefined);
  setText('tile-elapsed', duration(elapsed));
  let eta = '';
  if (s.status === 'running' && s.step && s.stepsPerEpoch && s.epochs && elapsed > 0) {
    const total = s.stepsPerEpoch * s.epochs;
    if (s.step < total) eta = `~${duration((elapsed / s.step) * (total - s.step))} left`;
  }
  setText('tile-eta', eta);

  renderNotices(s);
  const l = s.lines;
  const ignored = l.unknownEvents + l.invalidEvents + l.notJson;
  setText('line-counts', `${l.events.toLocaleString('en-US')} events · ${l.records} other log lines${ignored > 0 ? ` · ${ignored} ignored (${l.unknownEvents} unknown, ${l.invalidEvents} invalid, ${l.notJson} not JSON)` : ''}`);
}

function renderNotices(s) {
  const notices = [];
  if (s.status === 'failed') notices.push(['bad', `The job failed${s.error ? `: ${s.error}` : ''}.`]);
  if (s.status === 'completed') {
    const test = s.testAccuracy !== undefined ? ` Test accuracy ${percent(s.testAccuracy)}.` : '';
    notices.push(['info', `The job completed.${test}${s.modelDir ? ` Model saved to ${s.modelDir}.` : ''}`]);
  }
  if (s.earlyStop) {
    const e = s.earlyStop;
    notices.push(['info', `Early stop after epoch ${e.epoch}: ${e.monitor} best ${fixed(e.best)} at epoch ${e.bestEpoch}${e.restored ? ', best weights restored' : ''}.`]);
  }
  if (s.workerFailures > 0) notices.push(['warn', `${s.workerFailures} worker failure${s.workerFailures > 1 ? 's' : ''}; shards were reassigned.`]);
  if (s.dataSkips > 0) notices.push(['warn', `${s.dataSkips} sample${s.dataSkips > 1 ? 's' : ''} skipped (undecodable); see data_skip events in the log.`]);
  if (s.checkpoints > 0) notices.push(['info', `${s.checkpoints} checkpoint${s.checkpoints > 1 ? 's' : ''}; latest ${s.lastCheckpoint}.`]);
  const list = $('notices');
  const html = notices.map(([kind]) => kind).join();
  if (list.dataset.kinds === html && list.childElementCount === notices.length) {
    notices.forEach(([, text], i) => {
      if (list.children[i].textContent !== text) list.children[i].textContent = text;
    });
    return;
  }
  list.dataset.kinds = html;
  list.replaceChildren(
    ...notices.map(([kind, text]) => {
      const li = document.createElement('li');
      li.className = kind;
      li.textContent = text;
      return li;
    }),
  );
}

function connect() {
  // Updates are applied strictly in order, each after the charts drew the previous one.
  let queue = Promise.resolve();
  const source = new EventSource('api/stream');
  source.addEventListener('update', (message) => {
    const update = JSON.parse(message.data);
    queue = queue.then(() => applyUpdate(update)).catch((error) => console.error('dashboard update failed', error));
  });
  source.addEventListener('failure', (message) => {
    const { message: text } = JSON.parse(message.data);
    const badge = $('status');
    badge.dataset.status = 'failed';
    badge.textContent = 'log error';
    const li = document.createElement('li');
    li.className = 'bad';
    li.textContent = text;
    $('notices').prepend(li);
  });
  source.addEventListener('error', () => {
    // EventSource reconnects by itself; the server's first message then resets the page.
    if (latest?.summary && ['completed', 'failed', 'stopped'].includes(latest.summary.status)) return;
    const badge = $('status');
    badge.dataset.status = 'disconnected';
    badge.textContent = 'reconnecting';
  });
}

createCharts()
  .then(connect)
  .catch((error) => {
    document.body.dataset.status = 'error';
    setText('job', `cannot start the dashboard: ${error.message}`);
  });
