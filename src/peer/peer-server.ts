import * as grpc from '@grpc/grpc-js';
import { DroverError, ProtocolError, ProtocolMismatchError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { checkToken } from '../wire/auth.ts';
import type { ServerTlsFiles } from '../wire/credentials.ts';
import { bindServer, shutdownServer } from '../wire/server-lifecycle.ts';
import { FLOW_CONTROL_WINDOW, tuneServerWindow } from '../wire/flow-control.ts';
import { toStatus } from '../wire/status.ts';
import type { PeerHandlers } from './generated/drover/peer/v1/Peer.ts';
import type { PeerChunk__Output } from './generated/drover/peer/v1/PeerChunk.ts';
import { PeerInbox, type InboundChunk, type InboxOptions, type ParkedStream, type Slot } from './inbox.ts';
import { encodingFromWire, MAX_PEER_MESSAGE_BYTES, PEER_PROTOCOL_VERSION, peerService, phaseFromWire } from './protocol.ts';

export interface PeerServerOptions extends InboxOptions {
  /** Interface to listen on ("0.0.0.0" for every one). */
  host: string;
  /** 0 picks a free port (read it from `port`). */
  port: number;
  jobId: string;
  /** The job's shared secret; undefined runs open (like the coordinator without a token). */
  token: string | undefined;
  tls?: ServerTlsFiles;
  log?: Logger;
  /**
   * HTTP/2 receive window per connection and stream. A paused stream (its step not started yet)
   * holds at most this much in the socket buffers, so it also bounds what a sender can park here.
   */
  windowBytes?: number;
  /** Observes every accepted chunk (byte counters, tests). */
  onChunk?(chunk: InboundChunk): void;
}

export interface PeerServer {
  /** The port bound (the one to advertise at Join). */
  readonly port: number;
  /** Where accepted chunks land; the collective opens each step's expectation on it. */
  readonly inbox: PeerInbox;
  /** Refuses waiting streams and shuts down (forcefully after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

/**
 * Concurrent streams per connection. A sender needs at most a scatter, a gather and one early
 * stream of the next step, but processes holding several ranks (tests, benches) share one
 * connection per receiver, so this is HTTP/2's recommended minimum rather than 3.
 */
const MAX_STREAMS_PER_CONNECTION = 100;

/** The header of a wire chunk, checked for job, version, phase and encoding. */
function inbound(message: PeerChunk__Output, jobId: string): InboundChunk {
  if (message.protocolVersion !== PEER_PROTOCOL_VERSION) {
    throw new ProtocolMismatchError(`peer protocol version ${message.protocolVersion}, this worker speaks ${PEER_PROTOCOL_VERSION}`);
  }
  if (message.jobId !== jobId) throw new ProtocolMismatchError(`chunk of job "${message.jobId}", this worker runs job "${jobId}"`);
  const phase = phaseFromWire(message.phase);
  const encoding = encodingFromWire(message.encoding);
  if (!phase) throw new ProtocolError(`unknown phase ${message.phase}`);
  if (!encoding) throw new ProtocolError(`unknown encoding ${message.encoding}`);
  return {
    generation: message.generation,
    step: message.step,
    phase,
    sender: message.senderRank,
    range: message.rangeIndex,
    offset: message.offset,
    count: message.count,
    encoding,
    payload: message.payload,
  };
}

/** Every chunk of a stream names the same step, phase, sender, range and encoding as its first. */
function sameStream(first: InboundChunk, chunk: InboundChunk): void {
  if (chunk.generation !== first.generation || chunk.step !== first.step || chunk.phase !== first.phase || chunk.sender !== first.sender || chunk.range !== first.range || chunk.encoding !== first.encoding) {
    throw new ProtocolError('a Push stream carries one range of one step: a later chunk names another');
  }
}

/**
 * Serves a worker's Peer service: the token on every stream, job and version on every chunk,
 * then the inbox decides where (and whether) the values land. One stream fills one range; it
 * is answered once the range is complete.
 *
 * What a sender holding the token can make this worker hold: nothing beyond the open step's
 * slots, which the worker allocates itself, plus for each stream waiting for its step (at most
 * `maxParked`) one chunk and what gRPC buffers for a paused stream (16 messages of at most
 * ~1 MiB), plus each connection's receive window (`windowBytes`).
 */
export async function startPeerServer(options: PeerServerOptions): Promise<PeerServer> {
  const inbox = new PeerInbox(options);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_PEER_MESSAGE_BYTES,
    'grpc.max_send_message_length': 64 * 1024,
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
  });
  tuneServerWindow(server, options.windowBytes ?? FLOW_CONTROL_WINDOW);

  const refuse = (peer: string, error: unknown): grpc.StatusObject & { metadata: grpc.Metadata } => {
    const status = toStatus(error);
    const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
    options.log?.warn({ method: 'Push', peer, code, reason: status.details }, `refused a peer chunk from ${peer}: ${status.details}`);
    return status;
  };

  const handlers: PeerHandlers = {
    Push(call, callback) {
      const peer = call.getPeer();
      const owner = {};
      let finished = false;
      let ended = false;
      let first: InboundChunk | undefined;
      let slot: Slot | undefined;
      let parked: ParkedStream | undefined;

      const fail = (error: unknown): void => {
        if (finished) return;
        finished = true;
        if (slot) inbox.release(slot, owner);
        parked?.settle({ error: error as Error });
        callback(refuse(peer, error));
      };
      const answerIfEnded = (): void => {
        if (finished || !ended || parked) return;
        if (!slot?.done) {
          fail(new ProtocolError(`the stream ended after ${slot?.received ?? 0} of ${slot?.spec.target.length ?? '?'} values of its range`));
          return;
        }
        finished = true;
        callback(null, { receiverRank: slot.open.expectation.rank, received: slot.received });
      };
      const accept = (chunk: InboundChunk): void => {
        inbox.write(slot!, owner, chunk);
        options.onChunk?.(chunk);
      };

      try {
        checkToken(call.metadata, options.token);
      } catch (error) {
        fail(error);
        return;
      }
      call.on('data', (message: PeerChunk__Output) => {
        if (finished) return;
        try {
          const chunk = inbound(message, options.jobId);
          if (first) {
            sameStream(first, chunk);
            if (!slot) throw new ProtocolError('a chunk arrived while its stream waits for its step');
            accept(chunk);
            return;
          }
          first = chunk;
          const admission = inbox.admit(chunk);
          if (admission.kind === 'slot') {
            slot = admission.slot;
            accept(chunk);
            return;
          }
          // The sender is a step ahead: hold this chunk, stop reading, go on once the step opens.
          parked = admission.parked;
          call.pause();
          parked.onSettle((outcome) => {
            parked = undefined;
            if ('error' in outcome) return fail(outcome.error);
            slot = outcome.slot;
            try {
              accept(chunk);
            } catch (error) {
              return fail(error);
            }
            call.resume();
            answerIfEnded();
          });
        } catch (error) {
          fail(error);
        }
      });
      call.on('end', () => {
        ended = true;
        answerIfEnded();
      });
      const gone = (): void => {
        if (finished) return;
        finished = true;
        if (slot) inbox.release(slot, owner);
        parked?.settle({ error: new ProtocolError('the sender went away') });
      };
      // Not 'close': a readable closes after a normal 'end' too.
      call.on('cancelled', gone);
      call.on('error', gone);
    },
  };

  server.addService(peerService(), handlers);
  const port = await bindServer(server, options.host, options.port, options.tls);

  return {
    port,
    inbox,
    async close(graceMs = 1000): Promise<void> {
      inbox.close();
      await shutdownServer(server, graceMs);
    },
  };
}
