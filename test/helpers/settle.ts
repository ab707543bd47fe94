// Pool tests must fail, never hang: every call that could wait on a worker goes through these.
import * as assert from 'uvu/assert';

const HUNG = ' hung for ';

/** `promise`, or a rejection naming `what` after `ms`. */
export function settles<T>(promise: Promise<T>, what: string, ms = 60_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}${HUNG}${ms} ms`)), ms);
  });
  return Promise.race([promise, hang]).finally(() => clearTimeout(timer));
}

/** The error `promise` rejects with (a hang is a failure, not a rejection). */
export async function rejects(promise: Promise<unknown>, what: string): Promise<Error & { code?: string }> {
  try {
    await settles(promise, what);
  } catch (e) {
    if ((e as Error).message?.includes(HUNG)) throw e;
    return e as Error & { code?: string };
  }
  throw new Error(`${what}: expected a rejection`);
}

/** The fields of two layer results that must be the same bits. */
export interface SameResult {
  codes: unknown;
  scales: unknown;
  zeros: unknown;
  rowLoss: unknown;
  moves?: unknown;
  loss: number;
  dequantize(): unknown;
}

/** Asserts two layer results are the same bits (codes, grids, values, losses, moves). */
export function sameResult(a: SameResult, b: SameResult, what: string): void {
  assert.equal(a.codes, b.codes, `${what}: codes`);
  assert.equal(a.scales, b.scales, `${what}: scales`);
  assert.equal(a.zeros, b.zeros, `${what}: zeros`);
  assert.equal(a.dequantize(), b.dequantize(), `${what}: values`);
  assert.equal(a.rowLoss, b.rowLoss, `${what}: rowLoss`);
  assert.equal(a.moves, b.moves, `${what}: moves`);
  assert.ok(Object.is(a.loss, b.loss), `${what}: loss ${a.loss} vs ${b.loss}`);
}
