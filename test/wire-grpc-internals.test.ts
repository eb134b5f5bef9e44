import test from 'ava';
import fs from 'node:fs';
import http2 from 'node:http2';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { GrpcInternalsError } from '../src/errors.ts';
import { FLOW_CONTROL_WINDOW, tuneServerWindow } from '../src/wire/flow-control.ts';
import { FRAME_PREFIX_BYTES, framedSerializer, installFramedSerialize, writeFramePrefix } from '../src/wire/framed-serialize.ts';
import { checkGrpcJsVersion, installedGrpcJsVersion, isTestedGrpcJs, TESTED_GRPC_JS_VERSION } from '../src/wire/grpc-internals.ts';

// drover patches grpc-js internals (src/wire/grpc-internals.ts): these tests pin the version
// fence, and observe on real servers that each patch does what it is there for.

const DEFAULT_HTTP2_WINDOW = 65_535;

test('package.json pins grpc-js to the tested minor, and that is the version installed', (t) => {
  const manifest = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  t.is(manifest.dependencies['@grpc/grpc-js'], `~${TESTED_GRPC_JS_VERSION}`);
  t.true(isTestedGrpcJs(installedGrpcJsVersion()), `installed grpc-js ${installedGrpcJsVersion()}`);
  t.notThrows(() => checkGrpcJsVersion('anything'));
});

test('a grpc-js outside the tested range is refused loudly, naming both versions', (t) => {
  const [major, minor, patch] = TESTED_GRPC_JS_VERSION.split('.').map(Number) as [number, number, number];
  t.true(isTestedGrpcJs(`${major}.${minor}.${patch + 3}`));
  for (const version of [`${major}.${minor + 1}.0`, `${major}.${minor - 1}.${patch}`, `${major + 1}.${minor}.${patch}`, `${major}.${minor}.${patch - 1}`, 'unknown']) {
    const error = t.throws(() => checkGrpcJsVersion('Server.createHttp2Server', version), { instanceOf: GrpcInternalsError });
    t.is(error?.code, 'DROVER_ERR_GRPC_INTERNALS');
    t.is(error?.seenVersion, version);
    t.is(error?.testedVersion, TESTED_GRPC_JS_VERSION);
    t.true(error?.message.includes(`grpc-js ${version}`) && error.message.includes(TESTED_GRPC_JS_VERSION) && error.message.includes('Server.createHttp2Server'), error?.message);
  }
});

/** The receive windows a plain HTTP/2 client sees from a server: its stream window (SETTINGS) and connection window. */
async function windowsOf(server: grpc.Server): Promise<{ stream: number; connection: number }> {
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  const client = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await once(client, 'remoteSettings');
    // The server's WINDOW_UPDATE goes out before its answer to a ping sent after its SETTINGS.
    await new Promise<void>((resolve, reject) => client.ping((error) => (error ? reject(error) : resolve())));
    return { stream: client.remoteSettings.initialWindowSize!, connection: client.state.remoteWindowSize! };
  } finally {
    client.close();
    server.forceShutdown();
  }
}

test('tuneServerWindow: a real server advertises the window we set, per stream and per connection', async (t) => {
  t.deepEqual(await windowsOf(new grpc.Server()), { stream: DEFAULT_HTTP2_WINDOW, connection: DEFAULT_HTTP2_WINDOW }, 'untuned: HTTP/2 defaults');
  const tuned = new grpc.Server();
  tuneServerWindow(tuned);
  t.deepEqual(await windowsOf(tuned), { stream: FLOW_CONTROL_WINDOW, connection: FLOW_CONTROL_WINDOW });
  const other = new grpc.Server();
  tuneServerWindow(other, 3 * 1024 * 1024);
  t.deepEqual(await windowsOf(other), { stream: 3 * 1024 * 1024, connection: 3 * 1024 * 1024 });
});

test('tuneServerWindow refuses a server without the fields it sets', (t) => {
  const error = t.throws(() => tuneServerWindow({} as grpc.Server), { instanceOf: GrpcInternalsError });
  t.is(error?.code, 'DROVER_ERR_GRPC_INTERNALS');
  t.true(error?.message.includes(installedGrpcJsVersion()), error?.message);
});

test('installFramedSerialize: a real server writes the very frame the framed serializer built, no copy', async (t) => {
  installFramedSerialize();
  installFramedSerialize(); // once per process: a second call changes nothing
  // Watch what grpc-js's (patched) serializeMessage hands to the stream.
  const require = createRequire(import.meta.url);
  const prototype = (require('@grpc/grpc-js/build/src/server-interceptors.js') as { BaseServerInterceptingCall: { prototype: { serializeMessage(value: unknown): Buffer } } }).BaseServerInterceptingCall.prototype;
  const patched = prototype.serializeMessage;
  const written: Buffer[] = [];
  prototype.serializeMessage = function (value) {
    const frame = patched.call(this, value);
    written.push(frame);
    return frame;
  };
  const frames: Buffer[] = [];
  const unframed: Buffer[] = [];
  const framed = (value: Buffer): Buffer => {
    const frame = writeFramePrefix(Buffer.concat([Buffer.alloc(FRAME_PREFIX_BYTES), value]));
    frames.push(frame);
    return frame;
  };
  const plain = (value: Buffer): Buffer => {
    unframed.push(value);
    return value;
  };
  const method = (name: string, serialize: (value: Buffer) => Buffer) => ({
    path: `/drover.test.Frames/${name}`,
    requestStream: false,
    responseStream: true,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: serialize,
    responseDeserialize: (bytes: Buffer) => bytes,
  });
  const definition = { Framed: method('Framed', framedSerializer(framed)), Plain: method('Plain', plain) };
  const echoTwice = (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.write(Buffer.from('hello'));
    call.write(Buffer.from('world!'));
    call.end();
  };
  const server = new grpc.Server();
  server.addService(definition, { Framed: echoTwice, Plain: echoTwice });
  try {
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
    const Client = grpc.makeGenericClientConstructor(definition, 'Frames');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const receive = async (name: 'Framed' | 'Plain'): Promise<string[]> => {
      const got: string[] = [];
      for await (const message of (client as unknown as Record<string, (request: Buffer) => AsyncIterable<Buffer>>)[name]!(Buffer.alloc(0))) got.push(message.toString());
      return got;
    };
    t.deepEqual(await receive('Framed'), ['hello', 'world!']);
    t.is(frames.length, 2);
    t.is(written.length, 2);
    t.true(written[0] === frames[0] && written[1] === frames[1], 'grpc-js wrote our frames themselves');
    // The control: a serializer without a framed variant is framed (copied) by grpc-js as before.
    written.length = 0;
    t.deepEqual(await receive('Plain'), ['hello', 'world!']);
    t.is(written.length, 2);
    t.is(written[0]!.length, unframed[0]!.length + FRAME_PREFIX_BYTES);
    client.close();
  } finally {
    prototype.serializeMessage = patched;
    server.forceShutdown();
  }
});
