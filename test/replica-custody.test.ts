import test from 'ava';
import { ClusterError } from '../src/errors.ts';
import { ReplicaCustody, type CustodyHost } from '../src/coordinator/replica-custody.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import type { ReceivedTransfer } from '../src/wire/transfer.ts';

/** Custody on a stub host whose version is already past the coordinator's copy, with `live` workers. */
function custody(live: string[]) {
  let version = 0;
  const evicted: string[] = [];
  const requests: number[] = [];
  const host = {
    jobId: 'job',
    cluster: { stepDeadlineMs: 2000 },
    log: silentLogger(),
    membership: { live: () => live.map((id) => ({ id })) },
    link: () => ({ send: (messages: { stateRequest?: { requestId: number } }[]) => requests.push(messages[0]!.stateRequest!.requestId) }),
    evict: (id: string) => evicted.push(id),
    version: () => version,
    nextTransferId: () => 1,
  } as unknown as CustodyHost;
  const replicas = new ReplicaCustody(host);
  version = 3;
  return { replicas, evicted, requests };
}

const transfer = (): Promise<ReceivedTransfer> => Promise.resolve({ tensors: [], release: () => {} } as unknown as ReceivedTransfer);

test('no live worker holding the current state fails the job instead of going on from an older copy', async (t) => {
  const { replicas } = custody(['a']);
  await t.throwsAsync(replicas.refresh(), { instanceOf: ClusterError, message: /no live worker holds .* v3 .* v0/ });
});

test('a state reply of another version than asked for is refused: its worker is evicted', async (t) => {
  const { replicas, evicted, requests } = custody(['a']);
  (replicas as unknown as { held: Map<string, number> }).held.set('a', 3);
  const refreshing = replicas.refresh();
  await new Promise((resolve) => setImmediate(resolve));
  t.is(requests.length, 1);
  await replicas.state('a', { requestId: requests[0]!, version: 2, optimizerIterations: 0 } as never, transfer(), transfer());
  await t.throwsAsync(refreshing, { instanceOf: ClusterError });
  t.deepEqual(evicted, ['a']);
});
