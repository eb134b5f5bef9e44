import test, { type ExecutionContext } from 'ava';
import { TrainingError } from '../src/errors.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import type { PeerReplica, ReplicaGradients } from '../src/worker/compute-replica.ts';
import { PeerParticipant } from '../src/worker/peer-participant.ts';

/** A replica with one trainable weight of 4 values that records what it is asked to apply. */
function fakeReplica() {
  const calls = { applied: 0, skippedTo: [] as number[] };
  const replica: PeerReplica = {
    version: undefined,
    manifest: [{ name: 'w', shape: [4], dtype: 'float32', trainable: true }],
    reportsBuffers: false,
    enableOptimizer: () => {},
    applyReduced: async () => {
      calls.applied++;
      return true;
    },
    skipTo: (version) => calls.skippedTo.push(version),
    readState: async () => ({ weights: [new Float32Array(4)], optimizer: { iterations: 0, slots: [] } }),
    setOptimizerState: () => {},
    setWeights: () => {},
    train: async () => {
      throw new Error('not used');
    },
    evaluate: async () => {
      throw new Error('not used');
    },
    dispose: () => {},
  };
  return { replica, calls };
}

async function participant(t: ExecutionContext) {
  const fake = fakeReplica();
  const peer = await PeerParticipant.start({ jobId: 'job', token: undefined, config: { port: 0, optimizerJson: '{"name":"sgd","learningRate":0.1}', parkMs: 0 }, replica: fake.replica, log: silentLogger() });
  t.teardown(() => peer.close());
  return { peer, calls: fake.calls };
}

const gradients = (values: number[]): ReplicaGradients => ({ loss: 1, correct: 0, n: 2, grads: [Float32Array.from(values)], buffers: [] });

test('a contribution that is not finite fails the task before any peer is reached', async (t) => {
  const { peer } = await participant(t);
  const step = { generation: 1, rank: 0, peers: ['127.0.0.1:1', '127.0.0.1:2'], globalBatch: 2, deadlineMs: 500 };
  await t.throwsAsync(peer.reduce(1, step, gradients([0, Number.NaN, 0, 0])), { instanceOf: TrainingError, message: /NaN at value 1/ });
  // bf16 rounds 3.4e38 up to Infinity: checked after rounding.
  await t.throwsAsync(peer.reduce(1, step, gradients([0, 0, 3.4e38, 0]), 'bf16'), { instanceOf: TrainingError, message: /Infinity at value 2/ });
  await t.throwsAsync(peer.reduce(1, step, gradients([0, 0, 0, Number.NEGATIVE_INFINITY]), 'bf16'), { instanceOf: TrainingError, message: /-Infinity at value 3/ });
  // The largest finite bf16 passes (the task then fails for want of peers, not for its values).
  await t.throwsAsync(peer.reduce(1, step, gradients([3.3e38, 0, 0, 0]), 'bf16'), { message: /^(?!.*this worker's gradient contribution)/ });
});

test('a reduced sum that is not finite is refused on every replica at the commit, and each rank says so', async (t) => {
  const a = await participant(t);
  const b = await participant(t);
  const peers = [`127.0.0.1:${a.peer.port}`, `127.0.0.1:${b.peer.port}`];
  // Each contribution is finite (3e38 * 2/4 each); their sum overflows float32.
  const big = gradients([3e38, 1, 1, 1]);
  const big2 = gradients([3e38, 1, 1, 1]);
  const reports = await Promise.all([a, b].map(async ({ peer }, rank) => {
    const assignment = { taskId: `t${rank}`, step: 1, peer: { generation: 1, rank, peers, globalBatch: 2, deadlineMs: 5000 } };
    // Scaled by n / globalBatch = 1: 3e38 + 3e38 is Infinity.
    return peer.reduceTask(assignment as never, { n: 2, skipped: [] } as never, rank === 0 ? big : big2, { dataWaitMs: 0, computeMs: 0, transferMs: 0, decodeMs: 0 }, 'fp32');
  }));
  for (const report of reports) t.regex(report?.reduced?.refused ?? '', /Infinity at value 0/);
  for (const { peer, calls } of [a, b]) {
    await peer.commit({ step: 1, generation: 1, learningRate: 0.1, samples: 2, version: 2 });
    t.is(calls.applied, 0, 'no replica applies the update');
    t.deepEqual(calls.skippedTo, [2], 'every replica moves to the new version, weights unchanged');
  }
});
