// The GGUF grid search as it was before it was made fast (test/assembly/gguf-owc-reference.ts,
// a frozen copy), compiled with the package's own AssemblyScript and flags into a small wasm
// of its own, so the tests can run today's kernel and the old one side by side on the same
// inputs. Compiled once per process (a second or two).
import asc from 'assemblyscript/asc';
import { join } from 'node:path';

export interface OwcReference {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  free(ptr: number): void;
  ggufOwc(type: number, w: number, rows: number, cols: number, h: number, halves: number, subScales: number, subMins: number, scratch: number): void;
  ggufOwcScratch(): number;
  ggufKeepBetter(type: number, w: number, rows: number, cols: number, h: number, halves: number, subScales: number, subMins: number,
    bHalves: number, bSubScales: number, bSubMins: number, scratch: number): void;
}

let compiled: Promise<WebAssembly.Module> | null = null;

async function compile(): Promise<WebAssembly.Module> {
  let binary: Uint8Array | null = null;
  // baseDir: the package's asconfig.json (and its entries) must not be picked up.
  const { error, stderr } = await asc.main([
    'gguf-owc-reference.ts', '--baseDir', join(process.cwd(), 'test', 'assembly'), '--outFile', 'reference.wasm', '--optimizeLevel', '2', '--runtime', 'minimal', '--enable', 'simd',
    '--disable', 'relaxed-simd', '--initialMemory', '16', '--maximumMemory', '65536', '--noAssert',
  ], {
    writeFile(name: string, contents: string | Uint8Array) {
      if (name.endsWith('.wasm') && typeof contents !== 'string') binary = contents;
    },
  });
  if (error || !binary) throw new Error(`the OWC reference did not compile: ${error?.message ?? 'no output'}\n${stderr?.toString?.() ?? ''}`);
  return WebAssembly.compile(binary);
}

/** A fresh instance of the reference module. */
export async function owcReference(): Promise<OwcReference> {
  compiled ??= compile();
  const instance = await WebAssembly.instantiate(await compiled, {
    env: { abort: () => { throw new Error('OWC reference: wasm abort'); } },
  });
  return instance.exports as unknown as OwcReference;
}
