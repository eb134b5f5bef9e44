import { ClusterError } from '../errors.ts';
import type { JoinReply } from '../wire/generated/drover/v1/JoinReply.ts';
import type { JoinRequest__Output } from '../wire/generated/drover/v1/JoinRequest.ts';
import type { Coordinator } from './coordinator.ts';
import type { SessionHandlers, SessionHost, SessionLimits, WorkerLink } from './server.ts';

/**
 * What the server talks to over a job's phases: the coordinator of the current phase. One server
 * (one port) outlives the phases, so workers dismissed at a phase's end join the next at once.
 */
export class PhaseHost implements SessionHost {
  private current: Coordinator | undefined;

  constructor(
    readonly jobId: string,
    readonly token: string | undefined,
  ) {}

  /** From now on joins and sessions go to this phase's coordinator. */
  serve(coordinator: Coordinator): void {
    this.current = coordinator;
  }

  join(request: JoinRequest__Output, peer: string): JoinReply {
    return this.coordinator().join(request, peer);
  }

  leave(workerId: string, sessionKey: string, reason: string): void {
    this.coordinator().leave(workerId, sessionKey, reason);
  }

  openSession(workerId: string, sessionKey: string, link: WorkerLink, ready?: { peerPort: number }): { handlers: SessionHandlers; limits: SessionLimits } {
    return this.coordinator().openSession(workerId, sessionKey, link, ready);
  }

  private coordinator(): Coordinator {
    if (!this.current) throw new ClusterError(`job ${this.jobId} is not ready for workers yet`);
    return this.current;
  }
}
