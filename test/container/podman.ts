import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * podman for the container test, configured by a containers.conf this test writes (no global
 * edit): Debian's podman 4.3 needs the runc runtime on hosts where crun cannot set up cgroups,
 * and no default ulimits where the host's hard limits are lower than its defaults.
 */
export class Podman {
  private constructor(private readonly env: NodeJS.ProcessEnv, private readonly confDir: string) {}

  static async create(): Promise<Podman> {
    const confDir = await mkdtemp(path.join(os.tmpdir(), 'drover-podman-'));
    const conf = path.join(confDir, 'containers.conf');
    await writeFile(conf, '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n');
    return new Podman({ ...process.env, CONTAINERS_CONF: conf }, confDir);
  }

  /** Runs podman; rejects with its stderr. */
  async exec(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
    try {
      const { stdout } = await run('podman', args, { env: this.env, maxBuffer: 256 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000 });
      return stdout;
    } catch (error) {
      const e = error as Error & { stderr?: string };
      throw new Error(`podman ${args.join(' ')} failed: ${e.stderr?.slice(-3000) ?? e.message}`);
    }
  }

  /** Starts podman with this configuration. */
  spawn(args: string[], stdio: StdioOptions): ChildProcess {
    return spawn('podman', args, { env: this.env, stdio });
  }

  /** Runs podman with its output on the test's own (a long build shows its progress); rejects on a non-zero exit. */
  async stream(args: string[], timeoutMs: number): Promise<void> {
    const child = this.spawn(args, ['ignore', 'inherit', 'inherit']);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    if (code !== 0) throw new Error(`podman ${args.slice(0, 3).join(' ')} ... exited ${code}`);
  }

  async imageExists(name: string): Promise<boolean> {
    return this.exec(['image', 'exists', name]).then(() => true, () => false);
  }

  async close(): Promise<void> {
    await rm(this.confDir, { recursive: true, force: true });
  }
}

/**
 * A Debian base image without a registry: debootstrap (minbase) from Debian's archive, imported
 * into podman. Where a registry is reachable, DROVER_CONTAINER_BASE=docker.io/library/debian:bookworm-slim
 * skips this.
 */
export async function debootstrapBase(podman: Podman, name: string, suite: string): Promise<void> {
  if (await podman.imageExists(name)) return;
  const root = await mkdtemp(path.join(os.tmpdir(), 'drover-rootfs-'));
  try {
    const mirror = process.env.DROVER_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
    await new Promise<void>((resolve, reject) => {
      execFile('debootstrap', ['--variant=minbase', suite, root, mirror], { maxBuffer: 64 * 1024 * 1024, timeout: 20 * 60_000 }, (error, _stdout, stderr) =>
        error ? reject(new Error(`debootstrap ${suite} failed: ${stderr.slice(-2000) || error.message}`)) : resolve());
    });
    // What a slim image leaves out: package lists and caches.
    for (const dir of ['var/lib/apt/lists', 'var/cache/apt']) await rm(path.join(root, dir), { recursive: true, force: true });
    const tar = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const importer = podman.spawn(['import', '-', name], [tar.stdout!, 'ignore', 'inherit']);
    const [code] = (await once(importer, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`podman import of ${name} exited ${code}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The host's CA bundle, handed to the build as a secret (TLS-intercepting proxies). */
export async function caBundle(): Promise<string | undefined> {
  for (const file of [process.env.SSL_CERT_FILE, process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt']) {
    if (file && (await access(file).then(() => true, () => false))) return file;
  }
  return undefined;
}

/** Follows a container's output (`podman logs -f`) into a sink of JSON lines; stopped by the returned function. */
export function followLogs(podman: Podman, container: string, sink: { push(text: string): void; finish(reason: string): void }): () => void {
  const child = podman.spawn(['logs', '-f', container], ['ignore', 'pipe', 'pipe']);
  child.stdout!.setEncoding('utf8').on('data', (text: string) => sink.push(text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => sink.push(text));
  child.once('exit', () => sink.finish(`container ${container} stopped`));
  return () => {
    if (child.exitCode === null) child.kill();
  };
}
