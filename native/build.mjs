// Builds the optional oneDNN addon (native/build/Release/drover_onednn.node) at install time.
// It never fails the install: when something is missing it says why, writes the reason to
// native/build/skipped.txt (drover's loader reports it) and exits 0. drover then trains on wasm.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = path.dirname(fileURLToPath(import.meta.url));
const buildDir = path.join(nativeDir, 'build');
const skippedFile = path.join(buildDir, 'skipped.txt');

function skip(reason) {
  fs.mkdirSync(buildDir, { recursive: true });
  fs.writeFileSync(skippedFile, reason + '\n');
  console.log(`drover: native oneDNN kernels not built: ${reason}. drover trains on wasm without them.`);
  process.exit(0);
}

/** node-gyp: the one npm hands to install scripts, npm's bundled copy, or one on PATH. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return [process.execPath, [candidate]];
  }
  const onPath = spawnSync('node-gyp', ['--version'], { stdio: 'ignore' });
  if (onPath.status === 0) return ['node-gyp', []];
  return undefined;
}

function main() {
  if (process.env.DROVER_NATIVE === 'off') skip('DROVER_NATIVE=off');
  if (process.platform !== 'linux') skip(`platform ${process.platform} is not supported yet (Linux only)`);
  const cxx = process.env.CXX ?? 'c++';
  // Probe the compiler and oneDNN's header and library before node-gyp, for a clear reason.
  const probe = spawnSync(cxx, ['-x', 'c++', '-std=c++17', '-', '-ldnnl', '-o', '/dev/null'], {
    input: '#include <dnnl.hpp>\nint main() { dnnl::engine e(dnnl::engine::kind::cpu, 0); return 0; }\n',
    encoding: 'utf8',
  });
  if (probe.error) skip(`no C++ compiler (${cxx}: ${probe.error.code ?? probe.error.message}); install g++ (Debian: apt-get install g++)`);
  if (probe.status !== 0) {
    const firstError = (probe.stderr ?? '').split('\n').find((line) => /error/i.test(line)) ?? `exit ${probe.status}`;
    skip(`oneDNN is not usable (${firstError.trim().slice(0, 200)}); install it (Debian/Ubuntu: apt-get install libdnnl-dev)`);
  }
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined) skip('node-gyp not found (npm bundles it; run the install through npm)');
  const [command, prefix] = nodeGyp;
  // Node's own headers when they are installed (Debian's nodejs), so node-gyp needs no download.
  const prefixDir = path.resolve(path.dirname(process.execPath), '..');
  const nodedir = process.env.npm_config_nodedir ?? (fs.existsSync(path.join(prefixDir, 'include', 'node', 'node_api.h')) ? prefixDir : undefined);
  const args = [...prefix, 'rebuild', '--release', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  const result = spawnSync(command, args, { cwd: nativeDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0) {
    const log = `${result.stdout ?? ''}\n${result.stderr ?? ''}`;
    fs.mkdirSync(buildDir, { recursive: true });
    fs.writeFileSync(path.join(buildDir, 'build.log'), log);
    const firstError = log.split('\n').find((line) => /error/i.test(line)) ?? `exit ${result.status ?? result.signal}`;
    skip(`node-gyp failed (${firstError.trim().slice(0, 200)}; full log in native/build/build.log)`);
  }
  fs.rmSync(skippedFile, { force: true });
  console.log('drover: native oneDNN kernels built (native/build/Release/drover_onednn.node)');
}

main();
