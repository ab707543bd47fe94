import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CdquantError } from '../../src/core/errors.js';

export const DATA = join(process.cwd(), '..', 'shared', 'data');
export const readData = (name: string) => new Uint8Array(readFileSync(join(DATA, name)));
export const readDataText = (name: string) => readFileSync(join(DATA, name), 'utf8');

/** mulberry32: small, seeded, good enough for fuzzing and random shapes. */
export { mulberry32 as rng } from '../reference.js';

/** Runs f; returns 'ok' or the CdquantError code; rethrows anything else (a bug). */
export function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof CdquantError) return e.code;
    throw e;
  }
}

export function throwsType(f: () => unknown, Type: new (...a: never[]) => Error, match?: RegExp): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof Type)) throw new Error(`expected ${Type.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    if (match && !match.test((e as Error).message)) throw new Error(`message "${(e as Error).message}" does not match ${match}`);
    return;
  }
  throw new Error(`expected ${Type.name}, nothing thrown`);
}

export function sameArray(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what}: differs at ${i}: ${a[i]} vs ${b[i]}`);
  }
}
