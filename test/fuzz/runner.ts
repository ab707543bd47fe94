// Runs fuzz cases: each case is made from (seed, target, index) alone, run, and classified as
// a typed error, a valid output, or a failure (any other exception, an invalid result, a case
// slower than the limit, memory grown past the bound). A watchdog thread ends the process
// with the case's coordinates if a case never returns (a synchronous hang cannot be timed out
// from the thread that is stuck in it).
import { Worker } from 'node:worker_threads';
import { Rng, caseSeed } from './mutate.js';
import { KNOWN_ISSUES, isTyped, type Target } from './targets.js';

export interface Failure {
  target: string;
  seed: number;
  index: number;
  what: string;
  error: string;
}

export interface Stats {
  target: string;
  cases: number;
  typed: number;
  valid: number;
  failures: Failure[];
  /** Failures matching KNOWN_ISSUES, by issue. */
  known: Map<string, number>;
  ms: number;
  /** Largest growth of ArrayBuffer + heap memory over one case (bytes). */
  maxGrowth: number;
}

export interface RunOptions {
  seed: number;
  cases: number;
  /** First case index (to resume or reproduce). */
  start?: number;
  /** A case slower than this is a failure. */
  slowMs?: number;
  /** Memory a case may add: fixed part plus a multiple of its input size. */
  memoryBase?: number;
  memoryPerByte?: number;
  /** Stop early after this long (the cases run so far are reported). */
  timeLimitMs?: number;
}

const heartbeat = new Int32Array(new SharedArrayBuffer(16));
let watchdog: Worker | null = null;
let targetNames: string[] = [];

/** Starts the watchdog thread (once): it prints the case that has not returned for `hangMs`
 * and kills the process. */
export function startWatchdog(targets: Target[], seed: number, hangMs = 20_000): void {
  targetNames = targets.map((t) => t.name);
  if (watchdog) return;
  const code = `
    const { workerData } = require('node:worker_threads');
    const { writeSync } = require('node:fs');
    const beat = workerData.beat, names = workerData.names;
    let last = -1, since = Date.now();
    setInterval(() => {
      const now = Atomics.load(beat, 0);
      if (now !== last) { last = now; since = Date.now(); return; }
      if (Atomics.load(beat, 3) === 1 && Date.now() - since > workerData.hangMs) {
        writeSync(2, '\\nfuzz: case ' + Atomics.load(beat, 2) + ' of target ' + names[Atomics.load(beat, 1)] + ' (seed ' + workerData.seed + ') has not returned in ' + workerData.hangMs + ' ms: a hang. Reproduce: npm run fuzz -- --target ' + names[Atomics.load(beat, 1)] + ' --seed ' + workerData.seed + ' --case ' + Atomics.load(beat, 2) + '\\n');
        process.kill(process.pid, 'SIGKILL');
      }
    }, 250);
  `;
  watchdog = new Worker(code, { eval: true, workerData: { beat: heartbeat, names: targetNames, seed, hangMs } });
  watchdog.unref();
}

function memory(): number {
  const m = process.memoryUsage();
  return m.arrayBuffers + m.heapUsed;
}

export async function runTarget(target: Target, options: RunOptions): Promise<Stats> {
  const { seed, cases, start = 0, slowMs = 5000, memoryBase = 64 * 2 ** 20, memoryPerByte = 16, timeLimitMs = Infinity } = options;
  const stats: Stats = { target: target.name, cases: 0, typed: 0, valid: 0, failures: [], known: new Map(), ms: 0, maxGrowth: 0 };
  const t0 = performance.now();
  Atomics.store(heartbeat, 1, Math.max(0, targetNames.indexOf(target.name)));
  for (let index = start; index < start + cases; index++) {
    if (performance.now() - t0 > timeLimitMs) break;
    const rng = new Rng(caseSeed(seed, target.name, index));
    const input = target.make(rng);
    const fail = (error: string) => stats.failures.push({ target: target.name, seed, index, what: input.what, error });
    Atomics.store(heartbeat, 2, index);
    Atomics.add(heartbeat, 0, 1);
    Atomics.store(heartbeat, 3, 1);
    const before = memory();
    const c0 = performance.now();
    try {
      const r = target.run(input.data);
      if (r instanceof Promise) await r;
      stats.valid++;
    } catch (e) {
      const message = `${(e as Error)?.name ?? typeof e}: ${(e as Error)?.message ?? String(e)}`;
      const known = KNOWN_ISSUES.find((k) => k.target === target.name && k.error.test(message));
      if (isTyped(e)) stats.typed++;
      else if (known) stats.known.set(known.where, (stats.known.get(known.where) ?? 0) + 1);
      else fail(`${(e as Error)?.name ?? typeof e}: ${(e as Error)?.message ?? String(e)}${(e as Error)?.name === 'InvalidResult' ? '' : `\n${(e as Error)?.stack?.split('\n').slice(1, 4).join('\n') ?? ''}`}`);
    }
    Atomics.store(heartbeat, 3, 0);
    const dt = performance.now() - c0;
    const growth = memory() - before;
    stats.maxGrowth = Math.max(stats.maxGrowth, growth);
    if (dt > slowMs) fail(`took ${dt.toFixed(0)} ms (limit ${slowMs})`);
    if (growth > memoryBase + memoryPerByte * input.size) fail(`memory grew by ${(growth / 2 ** 20).toFixed(1)} MiB for a ${input.size}-byte input`);
    stats.cases++;
  }
  stats.ms = performance.now() - t0;
  return stats;
}

/** One line per target, as `npm run fuzz` prints it. */
export function summary(s: Stats): string {
  const known = [...s.known].map(([where, n]) => `\n    known issue, ${n} cases: ${where}`).join('');
  return `${s.target}: cases run ${s.cases} / typed errors ${s.typed} / valid outputs ${s.valid} / failures ${s.failures.length} (${(s.ms / 1000).toFixed(1)} s, max memory growth ${(s.maxGrowth / 2 ** 20).toFixed(1)} MiB)${known}`;
}

export function describeFailure(f: Failure): string {
  return `${f.target} case ${f.index} (seed ${f.seed}): ${f.what}\n    ${f.error.split('\n').join('\n    ')}\n    reproduce: npm run fuzz -- --target ${f.target} --seed ${f.seed} --case ${f.index}`;
}
