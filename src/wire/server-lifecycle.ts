import type * as grpc from '@grpc/grpc-js';
import { serverCredentials, type ServerTlsFiles } from './credentials.ts';

/** Binds `server` to host:port (0: any free port), with TLS when given; resolves to the bound port. */
export function bindServer(server: grpc.Server, host: string, port: number, tls: ServerTlsFiles | undefined): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, serverCredentials(tls), (error, bound) => (error ? reject(error) : resolve(bound)));
  });
}

/** Lets calls in flight finish for up to `graceMs`, then cuts what is left. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
