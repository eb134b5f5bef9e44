import test from 'ava';
import { hostOf, mostNamed } from '../src/coordinator/peer-reduction.ts';
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
