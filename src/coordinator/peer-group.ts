import type { PeerFault__Output } from '../wire/generated/drover/v1/PeerFault.ts';
import { planShards, type Balance, type ScheduledWorker, type ShardPlan } from './scheduler.ts';

// The peer reduction's group decisions, free of any session: who gets which shard, whom the
// fault reports blame, where a peer is reached.

/**
 * The workers named by the most distinct reporters, with one report naming each. A worker whose
 * own network broke names every peer, but every peer names it: it alone is evicted. When every
 * member of the group is named alike (2 workers naming each other), there is no telling who
 * failed: none, unless `evenIfAllTie`.
 */
export function mostNamed(faults: readonly (PeerFault__Output & { from: string })[], group: readonly string[], options: { evenIfAllTie?: boolean } = {}): Map<string, PeerFault__Output> {
  const votes = new Map<string, { reporters: Set<string>; fault: PeerFault__Output }>();
  for (const fault of faults) {
    for (const rank of fault.ranks) {
      const id = group[rank];
      if (id === undefined) continue;
      const entry = votes.get(id) ?? { reporters: new Set<string>(), fault };
      entry.reporters.add(fault.from);
      votes.set(id, entry);
    }
  }
  const most = Math.max(0, ...[...votes.values()].map((v) => v.reporters.size));
  const named = new Map([...votes].filter(([, v]) => v.reporters.size === most).map(([id, v]) => [id, v.fault]));
  if (!options.evenIfAllTie && named.size === new Set(group).size) return new Map();
  return named;
}

/**
 * The shards of a step, one per rank. A worker whose share rounds to zero would be left out of
 * the group, get no commit and be resynced every step: while the batch has a sample for each,
 * the shards are split equally instead.
 */
export function planPeerShards(ids: Uint32Array, workers: readonly ScheduledWorker[], balance: Balance): ShardPlan[] {
  const plans = planShards(ids, workers, balance);
  if (plans.length === workers.length || ids.length < workers.length) return plans;
  return planShards(ids, workers, 'equal');
}

/** The host part of a gRPC peer string ("ipv4:10.0.0.2:5000", "[::1]:5000", "10.0.0.2:5000"). */
export function hostOf(peer: string): string {
  const address = peer.replace(/^ipv[46]:/, '');
  const colon = address.lastIndexOf(':');
  const host = colon > 0 ? address.slice(0, colon) : address;
  return host.startsWith('[') || !host.includes(':') ? host : `[${host}]`;
}
