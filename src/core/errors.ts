// Every failure the package reports on purpose is a CdquantError with a stable `code`, so
// callers (and workers relaying errors across threads) can branch on it without parsing text.

export type ErrorCode =
  | 'SHAPE_MISMATCH'
  | 'NON_FINITE'
  | 'NOT_POSITIVE_DEFINITE'
  | 'BAD_OPTION'
  | 'BAD_FILE'
  | 'UNSUPPORTED_DTYPE'
  | 'ABORTED'
  | 'WORKER_FAILED'
  | 'KERNEL_FAILED';

export class CdquantError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ShapeError extends CdquantError {
  constructor(message: string) { super('SHAPE_MISMATCH', message); }
}
export class NonFiniteError extends CdquantError {
  constructor(message: string) { super('NON_FINITE', message); }
}
export class HessianError extends CdquantError {
  constructor(message: string) { super('NOT_POSITIVE_DEFINITE', message); }
}
export class OptionError extends CdquantError {
  constructor(message: string) { super('BAD_OPTION', message); }
}
export class FormatError extends CdquantError {
  constructor(message: string) { super('BAD_FILE', message); }
}
export class DtypeError extends CdquantError {
  constructor(message: string) { super('UNSUPPORTED_DTYPE', message); }
}
export class AbortError extends CdquantError {
  constructor(message = 'the operation was aborted') { super('ABORTED', message); }
}
export class WorkerError extends CdquantError {
  constructor(message: string) { super('WORKER_FAILED', message); }
}
export class KernelError extends CdquantError {
  constructor(message: string) { super('KERNEL_FAILED', message); }
}

const byCode: Record<ErrorCode, new (message: string) => CdquantError> = {
  SHAPE_MISMATCH: ShapeError,
  NON_FINITE: NonFiniteError,
  NOT_POSITIVE_DEFINITE: HessianError,
  BAD_OPTION: OptionError,
  BAD_FILE: FormatError,
  UNSUPPORTED_DTYPE: DtypeError,
  ABORTED: AbortError,
  WORKER_FAILED: WorkerError,
  KERNEL_FAILED: KernelError,
};

/** Rebuilds a typed error from its code and message (errors cross worker boundaries as data). */
export function errorFromCode(code: string, message: string): CdquantError {
  const Ctor = byCode[code as ErrorCode];
  return Ctor ? new Ctor(message) : new WorkerError(message);
}

/** Throws NonFiniteError naming `what` and the first bad index if any element is NaN or ±Inf. */
export function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) throw new NonFiniteError(`${what} has a non-finite value (${v}) at index ${i}`);
  }
}
