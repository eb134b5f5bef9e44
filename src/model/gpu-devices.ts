import { readdirSync } from 'node:fs';

/**
 * Whether this machine shows processes a GPU at all: on Linux a DRM render node
 * (/dev/dri/renderD*), an NVIDIA device (/dev/nvidia0...) or WSL's /dev/dxg. Without one, the
 * auto backend does not ask Dawn, which would only find a software rasteriser and print its
 * adapter-limit warnings on every run. Other systems: assumed yes (Dawn finds out).
 */
export function hasGpuDevice(): boolean {
  if (process.platform !== 'linux') return true;
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return list('/dev/dri').some((name) => name.startsWith('renderD')) || list('/dev').some((name) => /^nvidia\d+$/.test(name) || name === 'dxg');
}
