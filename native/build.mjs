// Builds the optional oneDNN addon (native/build/Release/drover_onednn.node) at install time.
// It never fails the install: when something is missing it says why, writes the reason to
// native/build/skipped.txt (drover's loader reports it) and exits 0. drover then trains on wasm.
//
// It never leaves a half-built addon either: node-gyp runs in a staging folder and the finished
// addon is renamed into place (atomic), so a build stopped part-way (Ctrl-C, a timeout) keeps
// the previous addon. And it does not rebuild an addon that is up to date (same sources, same
// platform, and it loads): npm reruns this script whenever it installs the folder as a package
// (`npx drover` in the project folder does), which must cost nothing.
// `node native/build.mjs --force` rebuilds anyway.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = path.dirname(fileURLToPath(import.meta.url));
const buildDir = path.join(nativeDir, 'build');
const skippedFile = path.join(buildDir, 'skipped.txt');
const addonFile = path.join(buildDir, 'Release', 'drover_onednn.node');
/** Records what the addon in place was built from (see upToDate). */
const stampFile = path.join(buildDir, 'stamp.json');
const STAGING_PREFIX = '.staging-';

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

/** What an addon is built from: the gyp file and the C++ sources, for this platform. */
function sourceStamp() {
  const hash = createHash('sha256');
  const files = ['binding.gyp', ...fs.readdirSync(path.join(nativeDir, 'src')).sort().map((f) => path.join('src', f))];
  for (const file of files) hash.update(file).update('\0').update(fs.readFileSync(path.join(nativeDir, file))).update('\0');
  // Node-API (NAPI_VERSION in binding.gyp): one build serves every Node version that has it.
  return { sources: hash.digest('hex'), platform: process.platform, arch: process.arch };
}

/** True when the addon in place was built from these sources here, and loads. */
function upToDate(stamp) {
  try {
    const recorded = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    if (recorded.sources !== stamp.sources || recorded.platform !== stamp.platform || recorded.arch !== stamp.arch) return false;
    createRequire(import.meta.url)(addonFile).info();
    return true;
  } catch {
    return false;
  }
}

/** Staging folders of builds that were stopped part-way (their process is gone). */
function removeStaleStaging() {
  for (const name of fs.readdirSync(nativeDir)) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const pid = Number(name.slice(STAGING_PREFIX.length).split('-')[0]);
    if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) continue;
    fs.rmSync(path.join(nativeDir, name), { recursive: true, force: true });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Writes a file by renaming a complete temporary copy over it. */
function replaceAtomically(target, write) {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const temp = `${target}.tmp-${process.pid}`;
  write(temp);
  fs.renameSync(temp, target);
}

function main() {
  const force = process.argv.includes('--force');
  removeStaleStaging();
  if (process.env.DROVER_NATIVE === 'off') skip('DROVER_NATIVE=off');
  if (process.platform !== 'linux') skip(`platform ${process.platform} is not supported yet (Linux only)`);
  const stamp = sourceStamp();
  if (!force && upToDate(stamp)) {
    console.log('drover: native oneDNN kernels up to date (native/build/Release/drover_onednn.node); `node native/build.mjs --force` rebuilds');
    return;
  }
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
  const staging = fs.mkdtempSync(path.join(nativeDir, `${STAGING_PREFIX}${process.pid}-`));
  try {
    fs.copyFileSync(path.join(nativeDir, 'binding.gyp'), path.join(staging, 'binding.gyp'));
    fs.cpSync(path.join(nativeDir, 'src'), path.join(staging, 'src'), { recursive: true });
    console.log(`drover: building the native oneDNN kernels in ${path.relative(process.cwd(), staging) || staging}`);
    const result = spawnSync(command, args, { cwd: staging, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (result.status !== 0) {
      const log = `${result.stdout ?? ''}\n${result.stderr ?? ''}`;
      fs.mkdirSync(buildDir, { recursive: true });
      fs.writeFileSync(path.join(buildDir, 'build.log'), log);
      const firstError = log.split('\n').find((line) => /error/i.test(line)) ?? `exit ${result.status ?? result.signal}`;
      fs.rmSync(staging, { recursive: true, force: true });
      skip(`node-gyp failed (${firstError.trim().slice(0, 200)}; full log in native/build/build.log)`);
    }
    const built = path.join(staging, 'build', 'Release', 'drover_onednn.node');
    replaceAtomically(addonFile, (temp) => fs.copyFileSync(built, temp));
    replaceAtomically(stampFile, (temp) => fs.writeFileSync(temp, JSON.stringify(stamp) + '\n'));
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  fs.rmSync(skippedFile, { force: true });
  console.log('drover: native oneDNN kernels built (native/build/Release/drover_onednn.node)');
}

main();
