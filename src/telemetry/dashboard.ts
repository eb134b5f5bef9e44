import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, DroverError } from '../errors.ts';
import { chartDefinitions, topLevel } from './chart-specs.ts';
import { parseLogLine } from './events.ts';
import { followLog } from './log-follower.ts';
import { RunState } from './run-state.ts';

export interface DashboardOptions {
  /** The run's JSON-lines log; it may not exist yet (the page waits for it). */
  logPath: string;
  /** TCP port; 0 picks a free one. Default 8377. */
  port?: number;
  /** Interface to listen on. Default 127.0.0.1 (the log names files and hosts: keep it local unless asked). */
  host?: string;
  /** How often the log is checked for new lines. Default 200 ms. */
  pollMs?: number;
}

export interface Dashboard {
  /** The page's address, e.g. http://127.0.0.1:8377/ */
  url: string;
  port: number;
  /** Ends every open page stream and stops listening. */
  close(): Promise<void>;
}

export const DEFAULT_DASHBOARD_PORT = 8377;
const OPTION_KEYS = new Set(['logPath', 'port', 'host', 'pollMs']);
/** Open pages at once: each one replays the log, so a scanner opening thousands must not. */
const MAX_STREAMS = 32;
/** A comment line on idle streams so proxies and browsers keep the connection. */
const KEEPALIVE_MS = 15_000;

const here = dirname(fileURLToPath(import.meta.url));
const ASSETS: Record<string, { file: string; type: string; cache: string }> = {
  '/': { file: join(here, 'dashboard', 'index.html'), type: 'text/html; charset=utf-8', cache: 'no-cache' },
  '/dashboard.js': { file: join(here, 'dashboard', 'dashboard.js'), type: 'text/javascript; charset=utf-8', cache: 'no-cache' },
  '/dashboard.css': { file: join(here, 'dashboard', 'dashboard.css'), type: 'text/css; charset=utf-8', cache: 'no-cache' },
};

/** The charting library, served from node_modules: the page needs no network beyond this server. */
function vendorAssets(): Record<string, { file: string; type: string; cache: string }> {
  const require = createRequire(import.meta.url);
  const files = {
    '/vendor/vega.min.js': join(dirname(require.resolve('vega')), 'vega.min.js'),
    '/vendor/vega-lite.min.js': join(dirname(require.resolve('vega-lite')), 'vega-lite.min.js'),
  };
  const assets: Record<string, { file: string; type: string; cache: string }> = {};
  for (const [path, file] of Object.entries(files)) {
    if (!existsSync(file)) throw new DroverError(`the dashboard needs ${file} (from the vega / vega-lite packages): reinstall dependencies`);
    assets[path] = { file, type: 'text/javascript; charset=utf-8', cache: 'public, max-age=3600' };
  }
  return assets;
}

function validate(options: DashboardOptions): void {
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw new ConfigError(`unknown dashboard option "${key}"`, key);
  }
  if (typeof options.logPath !== 'string' || options.logPath === '') {
    throw new ConfigError(`logPath must be the path of a run log, got ${JSON.stringify(options.logPath)}`, 'logPath');
  }
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 0 && options.port <= 65535)) {
    throw new ConfigError(`port must be an integer in 0..65535, got ${String(options.port)}`, 'port');
  }
  if (options.host !== undefined && (typeof options.host !== 'string' || options.host === '')) {
    throw new ConfigError(`host must be a host name or address, got ${JSON.stringify(options.host)}`, 'host');
  }
  if (options.pollMs !== undefined && !(Number.isFinite(options.pollMs) && options.pollMs >= 10)) {
    throw new ConfigError(`pollMs must be a number >= 10, got ${String(options.pollMs)}`, 'pollMs');
  }
}

/**
 * The path of a request target in origin form (`/path?query`), or undefined for anything else
 * (`*`, absolute form, `//`, bad escapes, control characters): those get a 400.
 */
export function requestPath(target: string | undefined): string | undefined {
  if (target === undefined || !target.startsWith('/') || target.startsWith('//')) return undefined;
  const raw = target.split(/[?#]/, 1)[0]!;
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return undefined;
  return path;
}

/** Host names a request may carry: loopback names, the bound host, and this machine's addresses when bound to all. */
function allowedHostNames(bound: string): Set<string> {
  const names = new Set(['localhost', '127.0.0.1', '::1']);
  const wildcard = bound === '0.0.0.0' || bound === '::';
  if (!wildcard) names.add(bound.toLowerCase());
  else {
    // Reached from another machine by address or by this machine's name: those cannot be rebound.
    names.add(hostname().toLowerCase());
    for (const list of Object.values(networkInterfaces())) for (const entry of list ?? []) names.add(entry.address.toLowerCase());
  }
  return names;
}

/** The Host header without its port, compared with the allowed names ([v6] literals unbracketed). */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (header === undefined || header === '') return false;
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(header.trim());
  if (!match) return false;
  const name = (match[1] ?? match[2]!).toLowerCase().replace(/\.$/, '');
  return allowed.has(name);
}

/** One Server-Sent Event; waits for the socket to drain so a slow page cannot pile up memory. */
async function sendEvent(res: ServerResponse, name: string, data: unknown, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const ok = res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  if (!ok) await once(res, 'drain', { signal }).catch(() => undefined);
}

/**
 * Serves the live dashboard of one run: a page of learning curves, loss per step,
 * throughput per worker, step-time split, worker membership and the last confusion
 * matrix, following `logPath` as it grows (or showing a finished run's log). Each page
 * gets the log from its first line, reduced by RunState on the server, as a stream of
 * Server-Sent Events (`update`: rows to insert or replace, and the run's summary).
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  validate(options);
  const logPath = resolve(options.logPath);
  const pollMs = options.pollMs ?? 200;
  const host = options.host ?? '127.0.0.1';
  const assets = { ...ASSETS, ...vendorAssets() };
  const cache = new Map<string, Buffer>();
  const streams = new Set<AbortController>();
  const charts = chartDefinitions({ width: 'container', height: 220 }).map((c) => ({ ...c, spec: topLevel(c.spec) }));

  const serveAsset = async (path: string, res: ServerResponse): Promise<void> => {
    const asset = assets[path]!;
    let body = cache.get(path);
    if (!body) {
      body = await readFile(asset.file);
      // Vendor files never change while serving; the page's own files are reread so edits show on reload.
      if (path.startsWith('/vendor/')) cache.set(path, body);
    }
    res.writeHead(200, { 'content-type': asset.type, 'cache-control': asset.cache, 'x-content-type-options': 'nosniff', 'content-length': body.length });
    res.end(body);
  };

  const serveStream = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const controller = new AbortController();
    const { signal } = controller;
    streams.add(controller);
    req.on('close', () => controller.abort());
    res.on('close', () => controller.abort());
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    keepalive.unref();
    const state = new RunState();
    let missing = false;
    try {
      // The first message always resets the page: a reconnecting page starts from scratch.
      await sendEvent(res, 'update', { ...state.takeDelta(), reset: true, log: { path: logPath, missing } }, signal);
      for await (const chunk of followLog(logPath, { signal, pollMs })) {
        const now = Date.now();
        if (chunk.kind === 'missing') missing = true;
        else if (chunk.kind === 'reset') state.reset();
        else {
          missing = false;
          for (const line of chunk.lines) state.apply(parseLogLine(line), now);
        }
        await sendEvent(res, 'update', { ...state.takeDelta(), log: { path: logPath, missing } }, signal);
      }
    } catch (error) {
      if (!signal.aborted) {
        await sendEvent(res, 'failure', { message: `cannot follow ${logPath}: ${(error as Error).message}` }, signal);
      }
    } finally {
      clearInterval(keepalive);
      streams.delete(controller);
      res.end();
    }
  };

  const allowedHosts = allowedHostNames(host);
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const reply = (status: number, text: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', ...headers }).end(`${text}\n`);
    };
    const hosts = req.headersDistinct.host ?? [];
    if (hosts.length !== 1 || !hostAllowed(hosts[0], allowedHosts)) {
      // DNS rebinding: a page on another site may resolve its own name to this address.
      reply(421, 'unknown host: the dashboard answers to localhost, 127.0.0.1, [::1] and the name it was bound to');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'method not allowed', { allow: 'GET, HEAD' });
      return;
    }
    const path = requestPath(req.url);
    if (path === undefined) {
      reply(400, 'bad request target');
      return;
    }
    const fail = (error: unknown): void => {
      if (res.headersSent) res.destroy();
      else reply(500, `dashboard error: ${(error as Error).message}`);
    };
    if (path === '/favicon.ico') res.writeHead(204).end();
    else if (path === '/api/stream' && req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' }).end();
    else if (path === '/api/stream') {
      if (streams.size >= MAX_STREAMS) reply(429, `too many open pages (${MAX_STREAMS}): close one`, { 'retry-after': '5' });
      else serveStream(req, res).catch(fail);
    } else if (path === '/api/charts') {
      const body = JSON.stringify({ logPath, charts });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' }).end(body);
    } else if (path === '/index.html' || Object.hasOwn(assets, path)) serveAsset(path === '/index.html' ? '/' : path, res).catch(fail);
    else reply(404, 'not found');
  };

  const server = createServer((req, res) => {
    // A peer that resets its connection must not become an unhandled 'error' event.
    req.on('error', () => {});
    res.on('error', () => {});
    try {
      handle(req, res);
    } catch {
      // Nothing a request carries may end the process that serves it (a training run).
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('bad request\n');
      else res.destroy();
    }
  });
  // Requests the HTTP parser refuses (bad header, bad method, oversized head): a 4xx, then close.
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (socket.writable && !socket.destroyed) {
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    } else socket.destroy();
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  const port = options.port ?? DEFAULT_DASHBOARD_PORT;
  try {
    server.listen(port, host);
    await once(server, 'listening');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'EADDRINUSE'
        ? `port ${port} on ${host} is in use: pick another with --port (0 picks a free one)`
        : `cannot listen on ${host}:${port}: ${(error as Error).message}`,
      'port',
      { cause: error },
    );
  }
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${bound}/`,
    port: bound,
    close() {
      closing ??= (async () => {
        for (const controller of streams) controller.abort();
        const closed = once(server, 'close');
        server.close();
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
