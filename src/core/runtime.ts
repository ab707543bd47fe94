// Runtime-neutral probes: which JavaScript runtime this is, how many cores it reports, whether
// it can start workers and share memory with them. No Node built-in is imported statically:
// Node modules are reached through a dynamic import behind a runtime check, so this file
// bundles for browsers, Deno, Bun and workerd unchanged.

export type RuntimeName = 'node' | 'deno' | 'bun' | 'browser' | 'workerd' | 'unknown';

const g = globalThis as any;

/** The runtime this code runs in (checked in an order that tells apart runtimes that imitate
 * each other: Deno and Bun both define `process`, workerd defines `navigator`). */
export function runtimeName(): RuntimeName {
  if (typeof g.Deno?.version?.deno === 'string') return 'deno';
  if (typeof g.Bun?.version === 'string') return 'bun';
  if (g.navigator?.userAgent === 'Cloudflare-Workers') return 'workerd';
  if (typeof g.process?.versions?.node === 'string') return 'node';
  if (typeof g.importScripts === 'function' || typeof g.document === 'object' || typeof g.WorkerGlobalScope === 'function') return 'browser';
  return 'unknown';
}

/** Imports a Node built-in (`node:os`, `node:worker_threads`) without a static import, so
 * bundlers for other platforms leave it alone. Only call it where runtimeName() is 'node'. */
export async function nodeModule<T = any>(name: `node:${string}`): Promise<T> {
  if (typeof g.process?.getBuiltinModule === 'function') return g.process.getBuiltinModule(name) as T;
  const specifier: string = name;
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as T;
}

/** Logical cores as the runtime reports them: `navigator.hardwareConcurrency` where it exists
 * (browsers, Deno, Bun, Node >= 21), `os.availableParallelism()` on older Node; 1 otherwise. */
export async function hardwareConcurrency(): Promise<number> {
  const n = g.navigator?.hardwareConcurrency;
  if (typeof n === 'number' && n >= 1) return Math.floor(n);
  if (runtimeName() === 'node') {
    const os = await nodeModule<any>('node:os');
    const m = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    if (m >= 1) return m;
  }
  return 1;
}

/** Whether this runtime can start worker threads: Web Workers (browsers, Deno, Bun) or Node's
 * worker_threads. workerd (Cloudflare) has neither. */
export function workersAvailable(): boolean {
  const name = runtimeName();
  if (name === 'workerd') return false;
  return typeof g.Worker === 'function' || name === 'node';
}

/** Whether a SharedArrayBuffer can be made here and posted to a worker. Browsers provide it
 * only to cross-origin isolated pages (COOP + COEP headers). */
export function sharedMemoryAvailable(): boolean {
  if (typeof g.SharedArrayBuffer !== 'function') return false;
  if (g.crossOriginIsolated === false) return false;
  try {
    new g.SharedArrayBuffer(8);
    return true;
  } catch {
    return false;
  }
}
