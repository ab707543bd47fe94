// Loads build/cdquant.wasm in any runtime and gives typed access to its memory.
// All numerics that shape a result run inside this module; TypeScript only moves bytes.
import { instantiate } from '@assemblyscript/loader';
import { wasmBase64 } from 'virtual:cdquant-wasm';
import { KernelError } from './errors.js';

/** The raw exports of cdquant.wasm: plain functions over byte offsets and sizes. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  free(ptr: number): void;
  [kernel: string]: any;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** Where the wasm comes from. Edge runtimes that forbid compiling bytes (workerd) pass the
 * WebAssembly.Module they imported; everything else can use the inlined copy. */
export function setWasmSource(source: WebAssembly.Module | BufferSource): void {
  compiled = Promise.resolve(source instanceof WebAssembly.Module ? source : WebAssembly.compile(source));
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The compiled module, compiled once per realm and shared by every Kernel in it. */
export function wasmModule(): Promise<WebAssembly.Module> {
  compiled ??= WebAssembly.compile(decodeBase64(wasmBase64));
  return compiled;
}

export class Kernel {
  readonly exports: KernelExports;
  private constructor(exports: KernelExports) {
    this.exports = exports;
  }

  static async create(module?: WebAssembly.Module): Promise<Kernel> {
    let memory: WebAssembly.Memory | undefined;
    const result = await instantiate<KernelExports>(module ?? (await wasmModule()), {
      env: {
        abort(msg: number, file: number, line: number, column: number) {
          throw new KernelError(`wasm abort at ${readString(memory, file)}:${line}:${column}: ${readString(memory, msg)}`);
        },
      },
    });
    memory = result.exports.memory;
    return new Kernel(result.exports as unknown as KernelExports);
  }

  alloc(bytes: number): number {
    const ptr = this.exports.alloc(Math.max(16, bytes));
    if (!ptr) throw new KernelError(`out of wasm memory allocating ${bytes} bytes`);
    return ptr;
  }
  free(ptr: number): void {
    if (ptr) this.exports.free(ptr);
  }

  // Views are made fresh on each call: growing memory detaches the old ones.
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.exports.memory.buffer, ptr, length);
  }
  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.exports.memory.buffer, ptr, length);
  }
  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.exports.memory.buffer, ptr, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer, ptr, length);
  }

  /** Allocates and fills a copy of `values`; the caller frees it. */
  put(values: Float32Array | Int32Array | Uint8Array | Float64Array): number {
    const ptr = this.alloc(values.byteLength);
    new Uint8Array(this.exports.memory.buffer, ptr, values.byteLength).set(
      new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    );
    return ptr;
  }

  /** Runs `body` with scratch allocations that are freed however it ends. */
  scoped<T>(body: (alloc: (bytes: number) => number, put: Kernel['put']) => T): T {
    const owned: number[] = [];
    try {
      return body(
        (bytes) => { const p = this.alloc(bytes); owned.push(p); return p; },
        (values) => { const p = this.put(values); owned.push(p); return p; },
      );
    } finally {
      for (const p of owned) this.free(p);
    }
  }
}

function readString(memory: WebAssembly.Memory | undefined, ptr: number): string {
  if (!memory || !ptr) return '?';
  const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  const chars = new Uint16Array(memory.buffer, ptr, bytes >>> 1);
  let text = '';
  for (let i = 0; i < chars.length; i++) text += String.fromCharCode(chars[i]);
  return text;
}

let shared: Promise<Kernel> | undefined;
/** One kernel per realm (thread) for callers that need no isolation. */
export function defaultKernel(): Promise<Kernel> {
  shared ??= Kernel.create();
  return shared;
}
