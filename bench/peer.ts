/**
 * The peer reduction (reduce-scatter + all-gather, src/peer/collective.ts) on loopback: 2..4
 * ranks in this one process, each with its own gRPC server, for gradient vectors of 0.2, 3.5 and
 * 25 M floats, fp32 and bf16 on the wire. Per setup: milliseconds per reduction (median) and
 * payload bytes each rank sent over the vector's bytes in that encoding (2(N-1)/N by design;
 * the star reduction moves 2N at the coordinator).
 *
 *   node --import tsx bench/peer.ts [--json] [--ranks 2,3,4] [--sizes 0.2,3.5,25] [--encodings fp32,bf16] [--reps 3]
 *
 * --json prints one line per setup: {"ranks":N,"params":P,"encoding":"fp32","ms_per_reduce":M,"cpu_ms_per_reduce":C,"sent_per_vector":R}.
 * cpu_ms_per_reduce is this process's CPU time (user + sys, all its ranks together) per reduction:
 * unlike the wall time, it does not grow when other processes take the cores.
 * All ranks share one event loop and the machine's cores, so times are an upper bound of what
 * separate processes on separate machines take; compare setups within one run. Asserts nothing.
 */
import { parseArgs } from 'node:util';
import { PeerCollective } from '../src/peer/collective.ts';
import { startPeerServer } from '../src/peer/peer-server.ts';
import { bytesPerValue, type Encoding } from '../src/peer/protocol.ts';

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    ranks: { type: 'string', default: '2,3,4' },
    sizes: { type: 'string', default: '0.2,3.5,25' },
    encodings: { type: 'string', default: 'fp32,bf16' },
    reps: { type: 'string', default: '3' },
  },
});
const list = (value: string): string[] => value.split(',').map((s) => s.trim()).filter(Boolean);
const rankCounts = list(args.ranks).map(Number);
const sizes = list(args.sizes).map((m) => Math.round(Number(m) * 1e6));
const encodings = list(args.encodings) as Encoding[];
const reps = Math.max(1, Number(args.reps));
const JOB = 'bench-peer';
const TOKEN = 'bench';

interface Row {
  ranks: number;
  params: number;
  encoding: Encoding;
  ms_per_reduce: number;
  cpu_ms_per_reduce: number;
  sent_per_vector: number;
}

function filled(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  for (let j = 0; j < length; j++) out[j] = Math.sin(j * 0.001 + seed) * 1e-3;
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const rows: Row[] = [];
for (const count of rankCounts) {
  const servers = await Promise.all(Array.from({ length: count }, () => startPeerServer({ host: '127.0.0.1', port: 0, jobId: JOB, token: TOKEN })));
  const peers = servers.map((s) => `127.0.0.1:${s.port}`);
  const collectives = servers.map((server, rank) => new PeerCollective({ jobId: JOB, token: TOKEN, inbox: server.inbox, group: { generation: 0, rank, peers } }));
  let step = 0;
  for (const params of sizes) {
    const vectors = collectives.map((_, r) => filled(params, r));
    for (const encoding of encodings) {
      const reduce = (): Promise<Float32Array[]> => {
        step++;
        return Promise.all(collectives.map((c, r) => c.reduceScatterAllGather(step, vectors[r]!, { deadlineMs: 120_000, encoding })));
      };
      // As a worker does once its optimizer applied the sum: the next reduction refills it.
      const reduceAndRecycle = async (): Promise<void> => {
        const sums = await reduce();
        sums.forEach((sum, r) => collectives[r]!.recycle(sum));
      };
      await reduceAndRecycle(); // connections, buffers
      const sentBefore = collectives[0]!.stats.bytesSent;
      const times: number[] = [];
      const cpuBefore = process.cpuUsage();
      for (let i = 0; i < reps; i++) {
        const started = performance.now();
        await reduceAndRecycle();
        times.push(performance.now() - started);
      }
      const cpu = process.cpuUsage(cpuBefore);
      const cpuMs = (cpu.user + cpu.system) / 1000 / reps;
      const sent = (collectives[0]!.stats.bytesSent - sentBefore) / reps;
      const row: Row = { ranks: count, params, encoding, ms_per_reduce: Math.round(median(times) * 10) / 10, cpu_ms_per_reduce: Math.round(cpuMs * 10) / 10, sent_per_vector: Math.round((sent / (params * bytesPerValue(encoding))) * 1000) / 1000 };
      rows.push(row);
      if (args.json) process.stdout.write(`${JSON.stringify(row)}\n`);
      else process.stdout.write(`ranks ${count}  ${(params / 1e6).toFixed(1).padStart(5)} M  ${encoding}  ${row.ms_per_reduce.toFixed(1).padStart(9)} ms/reduce ${row.cpu_ms_per_reduce.toFixed(1).padStart(9)} ms CPU/reduce  sent/vector ${row.sent_per_vector.toFixed(3)} (2(N-1)/N = ${((2 * (count - 1)) / count).toFixed(3)})\n`);
    }
  }
  for (const c of collectives) c.close();
  await Promise.all(servers.map((s) => s.close(200)));
}
