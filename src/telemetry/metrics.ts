import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { ConfigError } from '../errors.ts';
import { parseLogLine, type DroverEvent } from './events.ts';

/**
 * Prometheus metrics of a coordinator, derived from its event feed (docs/events.md): the same
 * lines the progress bar, the dashboard and the reports read, so the numbers cannot disagree.
 * prom-client keeps the registry and writes the exposition format.
 */

export interface MetricsServerOptions {
  /** 0: any free port (see `port`). */
  port: number;
  /** Interface to listen on. Default 0.0.0.0 (a pod's scrape comes from another host). */
  host?: string;
}

export interface MetricsServer {
  /** The bound port. */
  readonly port: number;
  /** http://host:port/metrics */
  readonly url: string;
  /** Where the run feed writes its JSON lines (one per write, as pino's multistream does). */
  readonly stream: Writable;
  /** The registry behind /metrics (tests read it directly). */
  readonly registry: Registry;
  close(): Promise<void>;
}

const OPTION_KEYS = new Set(['port', 'host']);

/** Step-time phases as they appear in the step event and as the `phase` label. */
const PHASES = [['dataWaitMs', 'data_wait'], ['computeMs', 'compute'], ['transferMs', 'transfer'], ['reduceMs', 'reduce']] as const;

/** The metrics and how each event moves them. */
export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly steps: Counter;
  private readonly step: Gauge;
  private readonly epoch: Gauge;
  private readonly imgPerSec: Gauge;
  private readonly stepPhase: Gauge;
  private readonly stepSeconds: Gauge;
  private readonly loss: Gauge;
  private readonly accuracy: Gauge;
  private readonly workersAlive: Gauge;
  private readonly workerJoins: Counter;
  private readonly evictions: Counter;
  private readonly skips: Counter;
  private readonly checkpoints: Counter;
  private readonly protocolViolations: Counter;
  private readonly updatesRefused: Counter;
  private readonly jobState: Gauge;
  private readonly alive = new Set<string>();
  /** The job's step number the counted steps have reached (a resumed run starts past 0). */
  private countedTo = 0;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'drover_' });
    this.steps = new Counter({ name: 'drover_steps_total', help: 'Optimizer steps this coordinator process completed', registers });
    this.step = new Gauge({ name: 'drover_step', help: 'Last completed step of the job (continues across a resume)', registers });
    this.epoch = new Gauge({ name: 'drover_epoch', help: 'Epoch of the last completed step', registers });
    this.imgPerSec = new Gauge({ name: 'drover_images_per_second', help: 'Training throughput of the whole cluster over the last logged step window', registers });
    this.stepPhase = new Gauge({ name: 'drover_step_phase_seconds', help: 'Time of the last logged step window spent per phase (mean per step)', labelNames: ['phase'], registers });
    this.stepSeconds = new Gauge({ name: 'drover_step_seconds', help: 'Wall time of a step over the last logged window (mean)', registers });
    this.loss = new Gauge({ name: 'drover_loss', help: 'Loss: train (last step window), validation (last epoch), test (end of job)', labelNames: ['split'], registers });
    this.accuracy = new Gauge({ name: 'drover_accuracy', help: 'Accuracy 0-1: train (last step window), validation (last epoch), test (end of job)', labelNames: ['split'], registers });
    this.workersAlive = new Gauge({ name: 'drover_workers_alive', help: 'Workers currently in the job', registers });
    this.workerJoins = new Counter({ name: 'drover_worker_joins_total', help: 'Workers that joined (rejoins count again)', registers });
    this.evictions = new Counter({ name: 'drover_worker_evictions_total', help: 'Workers evicted: died, missed the step deadline, or broke the protocol', registers });
    this.skips = new Counter({ name: 'drover_data_skips_total', help: 'Samples skipped as unreadable (counted, logged, never fatal)', registers });
    this.checkpoints = new Counter({ name: 'drover_checkpoints_total', help: 'Checkpoints written', registers });
    this.protocolViolations = new Counter({ name: 'drover_protocol_violations_total', help: 'Messages from workers that broke the protocol (malformed or unexpected results), refused', registers });
    this.updatesRefused = new Counter({ name: 'drover_updates_refused_total', help: 'Optimizer steps refused because they would have made a weight or optimizer slot non-finite', registers });
    this.jobState = new Gauge({ name: 'drover_job_state', help: '1 for the state the job is in: running, completed, stopped or failed', labelNames: ['state'], registers });
    for (const state of ['running', 'completed', 'stopped', 'failed']) this.jobState.set({ state }, 0);
  }

  /** Moves the metrics for one event. */
  observe(event: DroverEvent): void {
    switch (event.event) {
      case 'job_start':
        this.setState('running');
        this.countedTo = event.resumedFrom?.step ?? 0;
        if (event.resumedFrom) this.step.set(event.resumedFrom.step);
        return;
      case 'step':
        // Logged every train.logEvery steps: count the steps since the last line, not the line.
        this.countStepsTo(event.step);
        this.step.set(event.step);
        this.epoch.set(event.epoch);
        this.imgPerSec.set(event.imgPerSec);
        for (const [field, phase] of PHASES) this.stepPhase.set({ phase }, event[field] / 1000);
        if (event.stepMs !== undefined) this.stepSeconds.set(event.stepMs / 1000);
        this.loss.set({ split: 'train' }, event.loss);
        this.accuracy.set({ split: 'train' }, event.accuracy);
        return;
      case 'epoch':
        this.epoch.set(event.epoch);
        if (event.valLoss !== undefined) this.loss.set({ split: 'validation' }, event.valLoss);
        if (event.valAccuracy !== undefined) this.accuracy.set({ split: 'validation' }, event.valAccuracy);
        return;
      case 'evaluation':
        this.loss.set({ split: event.split }, event.loss);
        this.accuracy.set({ split: event.split }, event.accuracy);
        return;
      case 'worker_join':
        this.workerJoins.inc();
        this.alive.add(event.worker);
        this.workersAlive.set(this.alive.size);
        return;
      case 'worker_fail':
        this.evictions.inc();
        this.alive.delete(event.worker);
        this.workersAlive.set(this.alive.size);
        return;
      case 'worker_leave':
        this.alive.delete(event.worker);
        this.workersAlive.set(this.alive.size);
        return;
      case 'data_skip':
        this.skips.inc();
        return;
      case 'protocol_violation':
        this.protocolViolations.inc();
        return;
      case 'update_refused':
        this.updatesRefused.inc();
        return;
      case 'checkpoint':
        this.checkpoints.inc();
        return;
      case 'job_end':
        // The steps after the last logged window.
        this.countStepsTo(event.steps);
        this.step.set(event.steps);
        this.setState(event.status);
        return;
      default:
    }
  }

  private countStepsTo(step: number): void {
    if (step > this.countedTo) this.steps.inc(step - this.countedTo);
    this.countedTo = Math.max(this.countedTo, step);
  }

  private setState(state: 'running' | 'completed' | 'stopped' | 'failed'): void {
    for (const s of ['running', 'completed', 'stopped', 'failed']) this.jobState.set({ state: s }, s === state ? 1 : 0);
  }
}

/**
 * Serves GET /metrics on its own port (apart from the workers' gRPC port, so a scrape config
 * and a NetworkPolicy can treat it apart). Rejects with ConfigError on a bad option or when the
 * port cannot be bound (in use: pick another --metrics-port).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  for (const key of Object.keys(options)) if (!OPTION_KEYS.has(key)) throw new ConfigError(`unknown metrics option "${key}"`, key);
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new ConfigError(`metrics port must be 0-65535, got ${JSON.stringify(options.port)}`, 'port');
  }
  const host = options.host ?? '0.0.0.0';
  const metrics = new CoordinatorMetrics();
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (request.method !== 'GET' || url.pathname !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('drover serves only GET /metrics here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`),
    );
  });
  await listen(server, options.port, host);
  const port = (server.address() as AddressInfo).port;
  let partial = '';
  const stream = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _encoding, callback) {
      partial += String(chunk);
      let newline: number;
      while ((newline = partial.indexOf('\n')) >= 0) {
        const parsed = parseLogLine(partial.slice(0, newline));
        partial = partial.slice(newline + 1);
        if (parsed.kind === 'event') metrics.observe(parsed.event);
      }
      callback();
    },
  });
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    port,
    url: `http://${shownHost}:${port}/metrics`,
    stream,
    registry: metrics.registry,
    async close() {
      stream.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Binds `server`; a port that cannot be bound is a ConfigError naming --metrics-port. */
async function listen(server: http.Server, port: number, host: string): Promise<void> {
  server.listen(port, host);
  try {
    // events.once rejects on 'error' and removes both its listeners when it settles: none is
    // left behind to turn a later error into an unhandled rejection.
    await once(server, 'listening');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'EADDRINUSE'
        ? `metrics port ${port} on ${host} is in use: pick another with --metrics-port (0 picks a free one)`
        : `cannot serve metrics on ${host}:${port}: ${(error as Error).message} (--metrics-port, --metrics-host)`,
      'metrics-port',
      { cause: error },
    );
  }
}
