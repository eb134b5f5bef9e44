/**
 * One rank of a peer reduction in its own process, for test/peer-process.test.ts. Prints
 * `{"port":N}` once its Peer server listens, then for each JSON line on stdin
 * ({ rank, peers, step, seed, length, deadlineMs }) reduces vectorOf(seed, length) and prints
 * `{"step":S,"hex":...}` (the result's bytes, hashed) or `{"step":S,"error":code}`.
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { PeerCollective } from '../src/peer/collective.ts';
import { startPeerServer } from '../src/peer/peer-server.ts';
import { JOB, TOKEN, vectorOf } from './peer-fixtures.ts';

interface Command {
  rank: number;
  peers: string[];
  step: number;
  seed: number;
  length: number;
  deadlineMs: number;
}

const server = await startPeerServer({ host: '127.0.0.1', port: 0, jobId: JOB, token: TOKEN });
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
let collective: PeerCollective | undefined;
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as Command;
  collective ??= new PeerCollective({ jobId: JOB, token: TOKEN, inbox: server.inbox, group: { generation: 0, rank: command.rank, peers: command.peers } });
  try {
    const result = await collective.reduceScatterAllGather(command.step, vectorOf(command.seed, command.length), { deadlineMs: command.deadlineMs, encoding: 'fp32' });
    const hash = createHash('sha256').update(new Uint8Array(result.buffer, result.byteOffset, result.byteLength)).digest('hex');
    process.stdout.write(`${JSON.stringify({ step: command.step, hash })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ step: command.step, error: (error as { code?: string }).code ?? String(error) })}\n`);
  }
}
collective?.close();
await server.close(200);
