import { z } from 'zod';

/** Paths of PEM files for TLS. `ca` lets workers verify a self-signed coordinator certificate. */
export const tlsSpecSchema = z.strictObject({
  cert: z.string().min(1),
  key: z.string().min(1),
  ca: z.string().min(1).optional(),
});
export type TlsSpec = z.infer<typeof tlsSpecSchema>;

/** Optional checks on gradients beyond finiteness (see src/coordinator/gradient-guard.ts). */
export const gradientGuardSpecSchema = z.strictObject({
  /** Scale the step's averaged gradient down to this global L2 norm when it is larger. */
  clipNorm: z.number().positive().optional(),
  /**
   * Refuse a worker's contribution whose gradient norm exceeds this many times the median of the
   * recent accepted ones (the worker is evicted and its shard reassigned).
   */
  maxNormRatio: z.number().gt(1).optional(),
  /** How many recent contribution norms the median is taken over. */
  window: z.number().int().min(4).default(64),
  /** Contributions accepted before the ratio check starts (the median needs a history). */
  warmup: z.number().int().min(1).default(8),
});
export type GradientGuardSpec = z.infer<typeof gradientGuardSpecSchema>;

/**
 * A per-worker batch instead of train.batchSize's fixed global batch: each step's global batch is
 * perWorker x the live workers (split by measured throughput as ever), so adding workers adds
 * samples per step rather than cutting each worker's share. The learning rate follows the global
 * batch with gradual warm-up, by the linear rule for SGD and the square-root rule for adaptive
 * optimizers (src/train/schedule.ts has the sources).
 */
export const batchSpecSchema = z.strictObject({
  /** Samples each live worker adds to a step's global batch. */
  perWorker: z.number().int().positive(),
  /** The global batch train.optimizer's learning rate was tuned for (default: train.batchSize). */
  referenceBatch: z.number().int().positive().optional(),
  /**
   * Epochs over which the rate ramps from its base to the scaled one (Goyal et al.: 5). Each
   * phase ramps again (a transfer job's fine-tuning starts a fresh optimizer at its own rate).
   */
  warmupEpochs: z.number().min(0).default(5),
  /**
   * How the learning rate follows the global batch: `true` by train.optimizer (`sqrt` for adam
   * and rmsprop, `linear` for sgd and momentum), `linear` (x k for a batch k times the
   * reference), `sqrt` (x sqrt(k)), or `false` (train.optimizer's rate as it is).
   */
  scaleLearningRate: z.union([z.boolean(), z.enum(['linear', 'sqrt'])]).default(true),
});
export type BatchSpec = z.infer<typeof batchSpecSchema>;

/**
 * The `cluster:` section of a job file: how the coordinator serves, waits for, times and trusts
 * its workers. Every field has a default, so a job without the section runs distributed too.
 */
export const clusterSpecSchema = z.strictObject({
  /** Interface and port `drover coordinator` listens on (the --port flag overrides). */
  host: z.string().min(1).default('0.0.0.0'),
  port: z.number().int().min(0).max(65535).default(7070),
  /** Training starts (and continues) only with at least this many live workers. */
  minWorkers: z.number().int().positive().default(1),
  /** Workers beyond this are refused with RESOURCE_EXHAUSTED. */
  maxWorkers: z.number().int().positive().default(64),
  /** How long to wait for minWorkers before failing the job. */
  joinTimeoutMs: z.number().int().positive().default(300_000),
  /** A worker that has not returned its shard this long after the step began is evicted and its shard reassigned. */
  stepDeadlineMs: z.number().int().positive().default(60_000),
  /** Deprecated alias of train.checkpointEvery (parseJob makes the two agree); set that instead. */
  checkpointEvery: z.number().int().min(0).default(0),
  /** Shard sizes: `throughput` follows each worker's measured speed, `equal` splits evenly. */
  balance: z.enum(['throughput', 'equal']).default('throughput'),
  /** `stream`: the coordinator sends encoded samples; `shared`: only ids, every node mounts the dataset. */
  dataTransport: z.enum(['stream', 'shared']).default('stream'),
  /**
   * How workers send gradients: `fp32` (4 bytes a value, exact) or `bf16` (bfloat16: float32's
   * range at about 3 significant digits, 2 bytes a value, half the bytes). The coordinator decodes
   * bf16 back to float32 as it arrives and sums in float32; weights always travel as fp32 (a
   * worker that joins must hold exactly the weights the others hold).
   */
  wire: z.enum(['fp32', 'bf16']).default('fp32'),
  /** Samples per evaluation task (the evaluation of a split is sharded into tasks of this size). */
  evalTaskSize: z.number().int().positive().default(512),
  /** Shared secret workers present; DROVER_TOKEN in the environment is used when absent. */
  token: z.string().min(8, 'use a token of at least 8 characters').optional(),
  tls: tlsSpecSchema.optional(),
  gradientGuard: gradientGuardSpecSchema.optional(),
  /**
   * How a step's gradients become the update. `star`: every worker sends its gradient here; the
   * coordinator sums, applies the optimizer and broadcasts the weights. `peer`: workers
   * reduce-scatter and all-gather the gradient among themselves and each applies the same
   * optimizer step (src/coordinator/peer-reduction.ts); the coordinator only commits steps.
   * `peer` with cluster.maxWorkers 1 runs the star.
   */
  reduction: z.enum(['star', 'peer']).default('star'),
  /** Port each worker's peer server listens on with `reduction: peer` (0: any free port, told to the coordinator). */
  peerPort: z.number().int().min(0).max(65535).default(0),
  /**
   * With `reduction: peer`: how long a worker waits for its peers' parts of a step's reduction
   * before naming the missing ones to the coordinator (which evicts them and redoes the step).
   * Default: half of stepDeadlineMs, so the peers' report comes before the step deadline.
   */
  peerDeadlineMs: z.number().int().positive().optional(),
  /** Per-worker batch (absent: train.batchSize is the global batch, split among the workers). */
  batch: batchSpecSchema.optional(),
});

export type ClusterSpec = z.infer<typeof clusterSpecSchema>;
export type ClusterSpecInput = z.input<typeof clusterSpecSchema>;

/** The defaults, as a parsed spec. */
export function defaultClusterSpec(): ClusterSpec {
  return clusterSpecSchema.parse({});
}
