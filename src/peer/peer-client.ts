import * as grpc from '@grpc/grpc-js';
import { ClusterError, type DroverError } from '../errors.ts';
import { tokenMetadata } from '../wire/auth.ts';
import { channelCredentials, type ClientTlsFiles } from '../wire/credentials.ts';
import { FLOW_CONTROL_WINDOW } from '../wire/flow-control.ts';
import { ERROR_CODE_KEY, fromServiceError } from '../wire/status.ts';
import { encodeBf16 } from '../wire/bf16.ts';
import { releaseChunkFrame } from './framed-push.ts';
import type { PeerClient } from './generated/drover/peer/v1/Peer.ts';
import type { PeerChunk } from './generated/drover/peer/v1/PeerChunk.ts';
import { bytesPerValue, createPeerClient, ENCODING_ON_WIRE, MAX_PEER_CHUNK_BYTES, MAX_PEER_MESSAGE_BYTES, PEER_PROTOCOL_VERSION, PHASE_ON_WIRE, type Encoding, type Phase } from './protocol.ts';

/** What identifies one range sent to one receiver. */
export interface PushHeader {
  jobId: string;
  generation: number;
  step: number;
  phase: Phase;
  sender: number;
  range: number;
}

export interface PushOptions {
  encoding: Encoding;
  /** Absolute time (ms since the epoch) after which gRPC gives the stream up. */
  deadline: number;
}

/** How a push ended: payload bytes sent (the receiver has the whole range), or why not. */
export type PushOutcome =
  | { ok: true; bytes: number }
  | {
      ok: false;
      error: DroverError;
      /** The peer could not be reached or its connection broke (not a refusal it answered with). */
      unreachable: boolean;
    };

/** A push under way: its outcome (never rejects), and a way to give it up. */
export interface Push {
  readonly done: Promise<PushOutcome>;
  cancel(): void;
}

export interface PeerLinkOptions {
  token: string | undefined;
  tls?: ClientTlsFiles;
  /** Extra channel options (e.g. `grpc.ssl_target_name_override`). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * The send side towards one peer: one gRPC channel, one Push stream per range, chunks of at most
 * MAX_PEER_CHUNK_BYTES written as the stream accepts them (waiting for 'drain'), so a slow
 * receiver holds the sender to a stream buffer rather than a copy of the range.
 */
export class PeerLink {
  private readonly client: PeerClient;

  constructor(
    readonly address: string,
    private readonly options: PeerLinkOptions,
  ) {
    this.client = createPeerClient(address, channelCredentials(options.tls), {
      'grpc.max_send_message_length': MAX_PEER_MESSAGE_BYTES,
      'grpc.max_receive_message_length': 64 * 1024,
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
      ...options.channelOptions,
      // No retry buffering: a chunk's write callback then means gRPC wrote it, and its frame
      // goes back to the pool (framed-push.ts). A push is never retried anyway.
      'grpc.enable_retries': 0,
      'grpc.per_rpc_retry_buffer_size': 0,
    });
  }

  /** Streams one whole range, as `wireBytes` encoded it, to the peer. An empty range sends nothing. */
  push(header: PushHeader, bytes: Uint8Array, options: PushOptions): Push {
    if (bytes.byteLength === 0) return { done: Promise.resolve({ ok: true, bytes: 0 }), cancel: () => undefined };
    let call: grpc.ClientWritableStream<PeerChunk> | undefined;
    let settled = false;
    let wake: (() => void) | undefined;
    const done = new Promise<PushOutcome>((resolve) => {
      call = this.client.Push(tokenMetadata(this.options.token), { deadline: options.deadline }, (error) => {
        settled = true;
        wake?.();
        if (!error) return resolve({ ok: true, bytes: bytes.byteLength });
        const what = `push ${header.phase} of range ${header.range} to ${this.address}`;
        if (isUnreachable(error)) resolve({ ok: false, error: new ClusterError(`${what}: peer unreachable (${error.details || error.message})`, { cause: error }), unreachable: true });
        else resolve({ ok: false, error: fromServiceError(error, what), unreachable: false });
      });
      void writeChunks(call, header, options.encoding, bytes, () => settled, (resume) => (wake = resume));
    });
    return {
      done,
      cancel: () => {
        if (!settled) call?.cancel();
      },
    };
  }

  close(): void {
    this.client.close();
  }
}

/**
 * Whether a failed call means the peer is gone rather than that it refused: UNAVAILABLE (no
 * connection, or it dropped), or a broken stream that carries no drover error code.
 */
function isUnreachable(error: grpc.ServiceError): boolean {
  if (error.code === grpc.status.UNAVAILABLE) return true;
  const answered = error.metadata?.get(ERROR_CODE_KEY).length > 0;
  return !answered && (error.code === grpc.status.INTERNAL || error.code === grpc.status.UNKNOWN);
}

/**
 * A range's bytes on the wire: a view of the values (fp32: the caller keeps them unchanged
 * until the push settles), or their bfloat16 encoding (encode once, push to every peer).
 */
export function wireBytes(values: Float32Array, encoding: Encoding): Uint8Array {
  if (encoding === 'fp32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const encoded = encodeBf16(values);
  return new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
}

async function writeChunks(
  call: grpc.ClientWritableStream<PeerChunk>,
  header: PushHeader,
  encoding: Encoding,
  bytes: Uint8Array,
  settled: () => boolean,
  onWake: (resume: () => void) => void,
): Promise<void> {
  const bpv = bytesPerValue(encoding);
  const perChunk = Math.floor(MAX_PEER_CHUNK_BYTES / bpv);
  const total = bytes.byteLength / bpv;
  for (let offset = 0; offset < total && !settled(); offset += perChunk) {
    const count = Math.min(perChunk, total - offset);
    const chunk: PeerChunk = {
      jobId: header.jobId,
      protocolVersion: PEER_PROTOCOL_VERSION,
      generation: header.generation,
      step: header.step,
      phase: PHASE_ON_WIRE[header.phase],
      senderRank: header.sender,
      rangeIndex: header.range,
      offset,
      count,
      encoding: ENCODING_ON_WIRE[encoding],
      payload: bytes.subarray(offset * bpv, (offset + count) * bpv),
    };
    if (!call.write(chunk, () => releaseChunkFrame(chunk))) {
      // Wait for room, or for the call to end (refused, cancelled, deadline): 'drain' never comes then.
      await new Promise<void>((resume) => {
        const go = (): void => {
          call.off('drain', go);
          resume();
        };
        call.on('drain', go);
        onWake(go);
      });
    }
  }
  if (!settled()) call.end();
}
