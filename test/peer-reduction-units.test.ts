import test from 'ava';
import { hostOf } from '../src/coordinator/peer-reduction.ts';
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
