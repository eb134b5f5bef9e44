/**
 * Packs bench:gpu for a GPU machine that has no Node and reaches no registry: writes
 * `.gpu-bundle/` (git-ignored) at the repository root with
 *   run.sh             unpacks into a temp dir and runs everything (see bench/gpu/run.sh)
 *   node.xz            this machine's Node binary, xz -9
 *   bench.mjs          esbuild bundle of bench/gpu.ts: drover + tfjs + tfjs-backend-webgpu + webgpu's loader
 *   dawn.node.xz       the `webgpu` package's dist/linux-x64/dawn.node, xz -9; run.sh puts it at
 *                      dist/linux-x64/ beside bench.mjs, where the bundled loader looks
 *   models/mobilenet_v2/  nsfwjs' MobileNetV2 as model.json + weights (read like any backbone directory)
 *   torch_cuda.py      the PyTorch CUDA anchor
 *   lib/               the Vulkan loader (libvulkan.so.1) and all of glvnd (libGLdispatch, libGLX, libGL,
 *                      libEGL, libGLESv2, libOpenGL), which NVIDIA's Vulkan ICD (libGLX_nvidia.so.0)
 *                      needs: a headless GPU host often has none of them; run.sh puts each the machine
 *                      lacks on LD_LIBRARY_PATH (its first, non-invasive route)
 *   debs/              the Debian packages those come from (libvulkan1, libglvnd0, libglx0, libgl1,
 *                      libegl1, libgles2, libopengl0): run.sh's second route, only as root and only when
 *                      the first finds no adapter, unpacks them into / and runs ldconfig. Taken from
 *                      <repo>/.gl/ or $GPU_BUNDLE_DEBS when there, else `apt-get download` into
 *                      node_modules/.cache/drover-gpu-debs/
 *   vk-layer/          drover's one-GPU-per-process Vulkan layer, built here with cc: run.sh checks it
 *                      against the machine's driver (ordinal 0 shows the GPU, ordinal 1 nothing)
 * and prints its size (the machine takes 64 MiB with the checkout). The xz files are kept
 * between runs while their source has not changed (compressing Node takes minutes).
 *
 *   npm run bench:gpu:bundle [-- --out .gpu-bundle]
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nsfwjsBackbone } from '../../src/model/backbones/nsfwjs.ts';
import { directoryHandler } from '../../src/model/file-io.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const { values } = parseArgs({ options: { out: { type: 'string', default: path.join(root, '.gpu-bundle') } } });
const out = path.resolve(values.out);
const require = createRequire(import.meta.url);
/** The Vulkan loader and glvnd, by soname, and the Debian packages that hold them. */
const GLVND_LIBRARIES = ['libvulkan.so.1', 'libGLdispatch.so.0', 'libGLX.so.0', 'libGL.so.1', 'libEGL.so.1', 'libGLESv2.so.2', 'libOpenGL.so.0'];
const GLVND_PACKAGES = ['libvulkan1', 'libglvnd0', 'libglx0', 'libgl1', 'libegl1', 'libgles2', 'libopengl0'];

await mkdir(out, { recursive: true });
// Everything but the cached xz files is rewritten.
for (const entry of await readdir(out)) {
  if (!entry.endsWith('.xz') && !entry.endsWith('.xz.src')) await rm(path.join(out, entry), { recursive: true, force: true });
}

await build({
  entryPoints: [path.join(root, 'bench', 'gpu.ts')],
  outfile: path.join(out, 'bench.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __droverRequire } from 'node:module'; const require = __droverRequire(import.meta.url);" },
  // Not on the bench's path: the native addons (built per machine) and the optional tfjs-node.
  external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'sharp', 'piscina'],
  logLevel: 'warning',
  legalComments: 'none',
  // Readable stack traces in the GPU machine's log; the bundle is small either way.
  minify: false,
});

await xzCached(await realpath(process.execPath), 'node.xz');
const dawn = path.join(path.dirname(require.resolve('webgpu')), 'dist', 'linux-x64', 'dawn.node');
await xzCached(dawn, 'dawn.node.xz');

const backbone = await nsfwjsBackbone('nsfwjs:mobilenet_v2');
await directoryHandler(path.join(out, 'models', 'mobilenet_v2')).save!(backbone.artifacts);

await copyFile(path.join(here, 'torch_cuda.py'), path.join(out, 'torch_cuda.py'));
await copyFile(path.join(here, 'run.sh'), path.join(out, 'run.sh'));
await chmod(path.join(out, 'run.sh'), 0o755);
// NVIDIA's Vulkan ICD is its GLX library: with the loader and libGLdispatch alone the loader
// loads it but gets no vkCreateInstance from it ("Could not get 'vkCreateInstance' via
// 'vk_icdGetInstanceProcAddr'", seen on the lent H200 host); with glvnd's whole set unpacked
// into / it worked. The bundle carries that whole set, as libraries and as the packages.
const debs = await glvndDebs();
await mkdir(path.join(out, 'lib'), { recursive: true });
if (debs.length > 0) {
  await mkdir(path.join(out, 'debs'), { recursive: true });
  for (const deb of debs) await copyFile(deb, path.join(out, 'debs', path.basename(deb)));
  await librariesFromDebs(debs, path.join(out, 'lib'));
} else {
  for (const name of GLVND_LIBRARIES) {
    const found = findLibrary(name);
    if (found) await copyFile(found, path.join(out, 'lib', name));
    else console.warn(`no ${name} on this machine: the bundle relies on the GPU machine having it`);
  }
}

// drover's Vulkan device-select layer (src/model/vulkan-device-select.ts), for run.sh's check of
// it against the GPU machine's driver.
try {
  await mkdir(path.join(out, 'vk-layer'), { recursive: true });
  execFileSync(process.env.CC || 'cc', ['-shared', '-fPIC', '-O2', '-fvisibility=hidden', '-o', path.join(out, 'vk-layer', 'libVkLayer_drover_device_select.so'), path.join(root, 'native', 'vk-device-select', 'drover_device_select.c'), '-lpthread']);
} catch (err) {
  console.warn(`drover's Vulkan device-select layer not built (${(err as Error).message.split('\n')[0]}): run.sh skips its check`);
}

const bytes = await du(out);
console.log(`${path.relative(process.cwd(), out) || out}: ${(bytes / 2 ** 20).toFixed(1)} MiB`);
for (const entry of (await readdir(out)).sort()) console.log(`  ${entry.padEnd(18)} ${((await du(path.join(out, entry))) / 2 ** 20).toFixed(2)} MiB`);

/** xz -9 of `source` into out/name, reused while the source's path, size and mtime match. */
async function xzCached(source: string, name: string): Promise<void> {
  const target = path.join(out, name);
  const info = await stat(source);
  const stamp = `${source} ${info.size} ${info.mtimeMs}`;
  const previous = await readFile(`${target}.src`, 'utf8').catch(() => '');
  if (previous === stamp && (await stat(target).catch(() => undefined))) return;
  console.log(`compressing ${source} (xz -9, takes a while)`);
  execFileSync('sh', ['-c', 'xz -9 -c "$1" > "$2"', 'sh', source, target], { stdio: 'inherit' });
  await writeFile(`${target}.src`, stamp);
}

/** One .deb per package: from $GPU_BUNDLE_DEBS or <repo>/.gl, else downloaded once into a cache. Empty when neither works. */
async function glvndDebs(): Promise<string[]> {
  const cache = path.join(root, 'node_modules', '.cache', 'drover-gpu-debs');
  const dirs = [process.env.GPU_BUNDLE_DEBS, path.join(root, '.gl'), cache].filter((d): d is string => Boolean(d));
  const found: string[] = [];
  for (const pkg of GLVND_PACKAGES) {
    let deb = await findDeb(dirs, pkg);
    if (!deb) {
      try {
        await mkdir(cache, { recursive: true });
        execFileSync('apt-get', ['download', '-qq', pkg], { cwd: cache, stdio: 'inherit' });
        deb = await findDeb([cache], pkg);
      } catch (err) {
        console.warn(`apt-get download ${pkg} failed (${(err as Error).message.split('\n')[0]}): the bundle carries no packages, so run.sh has only its LD_LIBRARY_PATH route`);
        return [];
      }
    }
    if (!deb) return [];
    found.push(deb);
  }
  return found;
}

async function findDeb(dirs: string[], pkg: string): Promise<string | undefined> {
  for (const dir of dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const name = names.find((n) => n.startsWith(`${pkg}_`) && n.endsWith('_amd64.deb'));
    if (name) return path.join(dir, name);
  }
  return undefined;
}

/** Each shared library of the packages, under its soname (what the dynamic linker asks for). */
async function librariesFromDebs(debs: string[], target: string): Promise<void> {
  const unpacked = await mkdtemp(path.join(os.tmpdir(), 'drover-gpu-debs-'));
  try {
    for (const deb of debs) execFileSync('dpkg-deb', ['-x', deb, unpacked]);
    const libDir = path.join(unpacked, 'usr', 'lib', 'x86_64-linux-gnu');
    for (const name of GLVND_LIBRARIES) {
      const file = path.join(libDir, name);
      if (await stat(file).catch(() => undefined)) await copyFile(await realpath(file), path.join(target, name));
      else console.warn(`the packages hold no ${name}`);
    }
  } finally {
    await rm(unpacked, { recursive: true, force: true });
  }
}

function findLibrary(name: string): string | undefined {
  try {
    const listing = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
    const line = listing.split('\n').find((entry) => entry.trim().startsWith(`${name} (libc6,x86-64)`));
    return line?.split(' => ')[1]?.trim();
  } catch {
    return undefined;
  }
}

async function du(target: string): Promise<number> {
  const info = await stat(target);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(target)) total += await du(path.join(target, entry));
  return total;
}
