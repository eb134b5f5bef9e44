import fs from 'node:fs';
import path from 'node:path';

/**
 * Whether this machine could build the oneDNN addon: a C++ compiler on PATH (or $CXX) and
 * oneDNN's header. Only file-system look-ups, no process started, so every run can afford it:
 * where the toolchain is present, a missing or broken addon is a mistake worth a loud warning
 * (pure wasm trains ~3x slower); where it is absent, it is the documented optional path.
 */
export function nativeToolchainPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  return compilerPresent(env) && onednnHeaderPresent(env);
}

function compilerPresent(env: NodeJS.ProcessEnv): boolean {
  const cxx = env['CXX'];
  if (cxx && path.isAbsolute(cxx)) return isFile(cxx);
  const names = cxx ? [cxx] : ['c++', 'g++', 'clang++'];
  const dirs = (env['PATH'] ?? '').split(path.delimiter).filter(Boolean);
  return dirs.some((dir) => names.some((name) => isFile(path.join(dir, name))));
}

function onednnHeaderPresent(env: NodeJS.ProcessEnv): boolean {
  const dirs = ['/usr/include', '/usr/local/include', ...(env['CPATH'] ?? '').split(path.delimiter), ...(env['CPLUS_INCLUDE_PATH'] ?? '').split(path.delimiter)];
  return dirs.filter(Boolean).some((dir) => isFile(path.join(dir, 'dnnl.hpp')) || isFile(path.join(dir, 'oneapi', 'dnnl', 'dnnl.hpp')));
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
