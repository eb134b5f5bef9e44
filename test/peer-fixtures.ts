/** Groups of peer ranks on loopback for the peer reduction tests and bench (real gRPC servers on port 0). */
import { PeerCollective } from '../src/peer/collective.ts';
import type { InboundChunk } from '../src/peer/inbox.ts';
import { startPeerServer, type PeerServer } from '../src/peer/peer-server.ts';

export const JOB = 'peer-test-job';
export const TOKEN = 'peer-secret';

export interface Rank {
  server: PeerServer;
  collective: PeerCollective;
  address: string;
}

export interface RankGroup {
  ranks: Rank[];
  addresses: string[];
  close(): Promise<void>;
}

export interface GroupOptions {
  /** How long each rank's server lets a stream wait for a step not started (default: the inbox's). */
  parkMs?(rank: number): number | undefined;
  onChunk?(receiver: number, chunk: InboundChunk): void;
  /** TLS on every server (cert, key) and link (ca). */
  tls?: { cert: string; key: string; ca: string };
  /** Addresses of ranks served elsewhere (another process), in rank order after the local ones. */
  remote?: string[];
}

/** Starts `count` servers and their collectives (generation 0), rank order = start order. */
export async function startGroup(count: number, options: GroupOptions = {}): Promise<RankGroup> {
  const servers = await Promise.all(
    Array.from({ length: count }, (_, r) =>
      startPeerServer({
        host: '127.0.0.1',
        port: 0,
        jobId: JOB,
        token: TOKEN,
        tls: options.tls,
        parkMs: options.parkMs?.(r),
        onChunk: (chunk) => options.onChunk?.(r, chunk),
      }),
    ),
  );
  const addresses = [...servers.map((s) => `127.0.0.1:${s.port}`), ...(options.remote ?? [])];
  const ranks = servers.map((server, rank) => ({
    server,
    address: addresses[rank]!,
    collective: new PeerCollective({ jobId: JOB, token: TOKEN, tls: options.tls, inbox: server.inbox, group: { generation: 0, rank, peers: addresses } }),
  }));
  return {
    ranks,
    addresses,
    async close() {
      for (const rank of ranks) rank.collective.close();
      await Promise.all(ranks.map((rank) => rank.server.close(200)));
    },
  };
}

/** Deterministic values over many magnitudes (so the order of a float32 sum shows in its bits). */
export function vectorOf(seed: number, length: number): Float32Array {
  const out = new Float32Array(length);
  let state = (seed * 2654435761 + 1) >>> 0;
  for (let j = 0; j < length; j++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const unit = state / 2 ** 32 - 0.5;
    out[j] = unit * 2 ** ((state >>> 27) - 12);
  }
  return out;
}

/** The reference: acc = c0; acc += c1; ... over Float32Arrays, in the order given. */
export function sequentialSum(parts: readonly Float32Array[]): Float32Array {
  const acc = Float32Array.from(parts[0]!);
  for (const part of parts.slice(1)) for (let j = 0; j < acc.length; j++) acc[j]! += part[j]!;
  return acc;
}

/** Whether two arrays hold the same bits. */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
