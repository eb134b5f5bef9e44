/**
 * A rate-limited network on one machine, for benchmarks: `count` Linux network namespaces, each
 * joined to a bridge in a hub namespace by a veth pair whose two ends are shaped with `tc tbf` to
 * `rateMbit` (so each node has that much bandwidth in and out, as behind one switch port).
 * Addresses live only inside these namespaces (10.77.0.1 .. 10.77.0.N); everything is removed
 * by `close()`, on process exit and on SIGINT/SIGTERM. Needs root (`ip netns`, `tc`); `netem`
 * is not needed (it is unavailable here): tbf only limits the rate, latency is the kernel's.
 *
 * Loopback hides the network: on it a 25 M-parameter model's gradients move at memory speed.
 * Here they move at the link rate, as between machines.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface NamespaceNode {
  /** Namespace name, for `ip netns exec`. */
  ns: string;
  /** This node's address, reachable from every other node. */
  address: string;
}

export interface NamespaceNetworkOptions {
  count: number;
  /** Link rate per node, Mbit/s (both directions). */
  rateMbit: number;
  /** MTU of the links (default 9000, a data-centre network's jumbo frames). */
  mtu?: number;
}

const PREFIX = 'drvb';
const live = new Set<NamespaceNetwork>();

export class NamespaceNetwork {
  readonly nodes: NamespaceNode[] = [];
  private readonly hub: string;
  private closed = false;

  private constructor(private readonly id: string, readonly options: NamespaceNetworkOptions) {
    this.hub = `${PREFIX}${id}h`;
  }

  /** Creates the namespaces, bridge, links and shaping; removes what it made if any step fails. */
  static create(options: NamespaceNetworkOptions): NamespaceNetwork {
    if (process.getuid?.() !== 0) throw new Error('the namespace network needs root (ip netns, tc)');
    if (options.count < 1 || options.count > 200) throw new Error(`namespace count ${options.count} is outside 1..200`);
    removeStale();
    const net = new NamespaceNetwork(`${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`, options);
    live.add(net);
    installExitHooks();
    try {
      net.build();
    } catch (error) {
      net.close();
      throw error;
    }
    return net;
  }

  /** Starts `command` inside node `index`'s namespace. */
  spawn(index: number, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const node = this.nodes[index];
    if (!node) throw new Error(`no namespace node ${index}`);
    return spawn('ip', ['netns', 'exec', node.ns, command, ...args], options);
  }

  /** Deletes every namespace (and with them the links); idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    for (const name of [this.hub, ...this.nodes.map((n) => n.ns)]) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // Already gone (never made, or removed by hand).
      }
    }
  }

  private build(): void {
    const { count, rateMbit } = this.options;
    const mtu = String(this.options.mtu ?? 9000);
    ip('netns', 'add', this.hub);
    ipIn(this.hub, 'link', 'set', 'lo', 'up');
    ipIn(this.hub, 'link', 'add', 'br0', 'type', 'bridge');
    ipIn(this.hub, 'link', 'set', 'br0', 'up');
    for (let i = 0; i < count; i++) {
      const ns = `${PREFIX}${this.id}n${i}`;
      const address = `10.77.${Math.floor((i + 1) / 250)}.${((i + 1) % 250) + 1}`;
      ip('netns', 'add', ns);
      this.nodes.push({ ns, address });
      ipIn(ns, 'link', 'set', 'lo', 'up');
      // Made inside the node's namespace, then the peer end moves to the hub: names stay short and local.
      ipIn(ns, 'link', 'add', 'eth0', 'mtu', mtu, 'type', 'veth', 'peer', 'name', `p${i}`, 'mtu', mtu);
      ipIn(ns, 'link', 'set', `p${i}`, 'netns', this.hub);
      ipIn(ns, 'addr', 'add', `${address}/16`, 'dev', 'eth0');
      ipIn(ns, 'link', 'set', 'eth0', 'up');
      ipIn(this.hub, 'link', 'set', `p${i}`, 'master', 'br0');
      ipIn(this.hub, 'link', 'set', `p${i}`, 'up');
      // Egress of both ends: the node's sending rate, and the rate the switch delivers to it.
      shape(ns, 'eth0', rateMbit);
      shape(this.hub, `p${i}`, rateMbit);
    }
  }
}

/** tbf at `rateMbit` with a burst of ~10 ms at that rate (the kernel timer's grain needs at least rate/HZ). */
function shape(ns: string, dev: string, rateMbit: number): void {
  const burstBytes = Math.max(64 * 1024, Math.round((rateMbit * 1e6) / 8 / 100));
  execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', String(burstBytes), 'latency', '100ms'], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function ipIn(ns: string, ...args: string[]): void {
  ip('-n', ns, ...args);
}

/** Namespaces left by an earlier run whose process is gone (killed with -9). */
function removeStale(): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number.parseInt(name.slice(PREFIX.length).replace(/[hn]\d*$/, '').slice(0, -2), 36);
    if (Number.isFinite(pid) && pid !== process.pid && !alive(pid)) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // Raced with its owner's own cleanup.
      }
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let hooked = false;
function installExitHooks(): void {
  if (hooked) return;
  hooked = true;
  const closeAll = (): void => {
    for (const net of [...live]) net.close();
  };
  process.on('exit', closeAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      closeAll();
      process.kill(process.pid, signal);
    });
  }
}
