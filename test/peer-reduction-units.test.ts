import test from 'ava';
import { PeerReduction, type PeerHost } from '../src/coordinator/peer-reduction.ts';
import { hostOf, mostNamed, planPeerShards } from '../src/coordinator/peer-group.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { clusterSpecSchema } from '../src/job/cluster-spec.ts';

test('a peer address is the host the coordinator sees the session come from, in a form gRPC dials', (t) => {
  t.is(hostOf('ipv4:10.0.0.2:5000'), '10.0.0.2');
  t.is(hostOf('127.0.0.1:45123'), '127.0.0.1');
  t.is(hostOf('[::1]:5000'), '[::1]');
  t.is(hostOf('ipv6:[fe80::1]:5000'), '[fe80::1]');
  t.is(hostOf('ipv6:fe80::1:5000'), '[fe80::1]');
});

test('cluster.reduction defaults to the star; the peer options have their defaults', (t) => {
  const spec = clusterSpecSchema.parse({});
  t.is(spec.reduction, 'star');
  t.is(spec.peerPort, 0);
  t.is(spec.peerDeadlineMs, undefined);
  t.is(clusterSpecSchema.parse({ reduction: 'peer', peerPort: 7071, peerDeadlineMs: 5000 }).reduction, 'peer');
  t.throws(() => clusterSpecSchema.parse({ reduction: 'ring' }));
});

test('the coordinator evicts the worker most peers name: one whose own network broke cannot evict the group', (t) => {
  const group = ['w1', 'w2', 'w3', 'w4'];
  const fault = (from: string, ranks: number[]) => ({ from, taskId: '', step: 3, generation: 1, ranks, phase: 'scatter', reason: 'unreachable', message: '' });
  // w2 cannot reach anyone and names all; everyone else names w2.
  const named = mostNamed([fault('w2', [0, 2, 3]), fault('w1', [1]), fault('w3', [1]), fault('w4', [1])], group);
  t.deepEqual([...named.keys()], ['w2']);
  // A lone report (the others still within their deadline) names who it names.
  t.deepEqual([...mostNamed([fault('w1', [2, 3])], group).keys()], ['w3', 'w4']);
  t.is(mostNamed([], group).size, 0);
});

test('two workers that name each other are not both evicted: a tie among the whole group names no one', (t) => {
  const fault = (from: string, ranks: number[]) => ({ from, taskId: '', step: 3, generation: 1, ranks, phase: 'scatter', reason: 'unreachable', message: '' });
  t.is(mostNamed([fault('a', [1]), fault('b', [0])], ['a', 'b']).size, 0);
  // Once the attempts without eviction run out, the tied are named anyway.
  t.deepEqual([...mostNamed([fault('a', [1]), fault('b', [0])], ['a', 'b'], { evenIfAllTie: true }).keys()].sort(), ['a', 'b']);
});

/** A PeerReduction on a stub host, with one running attempt over `group`; who it evicts. */
function runningAttempt(group: string[], peerDeadlineMs: number) {
  const evicted: string[] = [];
  let failed: string | undefined;
  const host = {
    jobId: 'job',
    cluster: clusterSpecSchema.parse({ reduction: 'peer', peerDeadlineMs }),
    log: silentLogger(),
    version: () => 0,
    link: () => undefined,
    evict: (id: string) => evicted.push(id),
  } as unknown as PeerHost;
  const reduction = new PeerReduction(host);
  const attempt = {
    state: { round: { step: 3 }, peer: { generation: 1 }, reject: (error: Error) => (failed = error.message) },
    group,
    faults: new Map(),
    timer: undefined,
    judgeAt: 0,
    failed: false,
  };
  (reduction as unknown as { current: typeof attempt }).current = attempt;
  const report = (from: string, ranks: number[]) => reduction.fault(from, { taskId: '', step: 3, generation: 1, ranks, phase: 'scatter', reason: 'unreachable', message: '' });
  return { reduction, attempt, evicted, report, failed: () => failed };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a worker whose own links fail fast does not evict the others: its report waits for the peers that name it', async (t) => {
  const { evicted, report, failed } = runningAttempt(['w1', 'w2', 'w3', 'w4'], 400);
  report('w2', [0, 2, 3]);
  await sleep(350);
  t.is(failed(), undefined, 'a report naming most of the group is not judged alone within the fault window');
  report('w1', [1]);
  report('w3', [1]);
  report('w4', [1]);
  await sleep(500);
  t.deepEqual(evicted, ['w2']);
});

test('one report per sender, ranks within the group: a worker cannot flood the fault list', async (t) => {
  const { attempt, evicted, report } = runningAttempt(['a', 'b', 'c'], 100);
  report('a', [1, 1, 1, 7, -1]);
  for (let i = 0; i < 50; i++) report('a', [2]);
  t.is(attempt.faults.size, 1);
  t.deepEqual(attempt.faults.get('a').ranks, [1]);
  await sleep(400);
  t.deepEqual(evicted, ['b']);
});

test('a dropped attempt clears its fault timer', async (t) => {
  const { reduction, attempt, evicted, report, failed } = runningAttempt(['a', 'b', 'c'], 100);
  report('a', [1]);
  t.truthy(attempt.timer);
  (reduction as unknown as { abort(a: unknown): void }).abort(attempt);
  await sleep(400);
  t.deepEqual(evicted, []);
  t.is(failed(), undefined);
});

test('every rank of the group gets a shard, even one whose throughput share rounds to zero', (t) => {
  const ids = Uint32Array.from({ length: 8 }, (_, i) => i);
  const workers = [{ id: 'fast', throughput: 1000 }, { id: 'slow', throughput: 1 }];
  const plans = planPeerShards(ids, workers, 'throughput');
  t.deepEqual(plans.map((p) => p.workerId), ['fast', 'slow']);
  t.true(plans.every((p) => p.ids.length > 0));
  t.is(plans.reduce((n, p) => n + p.ids.length, 0), 8);
});

test('a step whose reduced sum a rank reports not finite is committed as refused (the coordinator logs update_refused)', async (t) => {
  const { reduction, attempt } = runningAttempt(['a', 'b'], 100);
  (reduction as unknown as { finished: typeof attempt }).finished = attempt;
  const results = reduction.open() as ReturnType<PeerReduction['open']> & { refuse(why: string): void };
  results.offer(0, { shard: { loss: 1, correct: 0, n: 2, grads: [], buffers: [] }, from: 'a' }, () => {});
  results.refuse('b: the reduced gradient holds Infinity at value 0');
  const outcome = await results.apply({ step: 3, lr: 0.1, version: 4 });
  t.is(outcome.kind, 'refused');
});
