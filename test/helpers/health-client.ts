import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/** grpc.health.v1 statuses by their wire number (HealthCheckResponse.ServingStatus). */
const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;
export type HealthStatus = (typeof STATUS_NAMES)[number];

type HealthReply = { status: string | number };
interface RawHealthClient extends grpc.Client {
  check(request: { service: string }, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: HealthReply) => void): void;
  watch(request: { service: string }): grpc.ClientReadableStream<HealthReply>;
}

const HealthClient = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => RawHealthClient;

function statusName(status: string | number): HealthStatus {
  return typeof status === 'number' ? STATUS_NAMES[status] ?? 'UNKNOWN' : (status as HealthStatus);
}

/** A real grpc.health.v1 client, as kubelet's gRPC probe or grpc-health-probe is: no token, plaintext. */
export class HealthProbe {
  private readonly client: RawHealthClient;

  constructor(address: string) {
    this.client = new HealthClient(address, grpc.credentials.createInsecure());
  }

  /** Health.Check; rejects with the gRPC error (NOT_FOUND for a service the server does not know). */
  check(service = '', timeoutMs = 10_000): Promise<HealthStatus> {
    return new Promise((resolve, reject) => {
      this.client.check({ service }, { deadline: Date.now() + timeoutMs }, (error, reply) => (error ? reject(error) : resolve(statusName(reply!.status))));
    });
  }

  /** Health.Watch: every status the server sends, in order, until `stop()` or the stream ends. */
  watch(service = ''): { statuses: HealthStatus[]; next(timeoutMs?: number): Promise<HealthStatus>; stop(): void } {
    const call = this.client.watch({ service });
    const statuses: HealthStatus[] = [];
    let read = 0;
    let waiter: (() => void) | undefined;
    let ended: Error | undefined;
    call.on('data', (reply: HealthReply) => {
      statuses.push(statusName(reply.status));
      waiter?.();
    });
    call.on('error', (error: Error) => {
      ended = error;
      waiter?.();
    });
    call.on('end', () => {
      ended ??= new Error('watch stream ended');
      waiter?.();
    });
    return {
      statuses,
      next: (timeoutMs = 30_000) =>
        new Promise<HealthStatus>((resolve, reject) => {
          const settle = (): boolean => {
            if (read < statuses.length) {
              clearTimeout(timer);
              resolve(statuses[read++]!);
              return true;
            }
            if (ended) {
              clearTimeout(timer);
              reject(ended);
              return true;
            }
            return false;
          };
          const timer = setTimeout(() => reject(new Error(`no health status within ${timeoutMs} ms (seen: ${statuses.join(', ') || 'none'})`)), timeoutMs);
          if (!settle()) waiter = () => void settle();
        }),
      stop: () => call.cancel(),
    };
  }

  close(): void {
    this.client.close();
  }
}
