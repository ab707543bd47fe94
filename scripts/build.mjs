// Builds the package: AssemblyScript -> build/cdquant.wasm, then esbuild bundles the
// TypeScript (library, CLI, worker; with --tests also test/*.test.ts -> build/test/).
import { readFile, readdir, mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import asc from 'assemblyscript/asc';
import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = (p) => join(root, p);
const withTests = process.argv.includes('--tests');

await mkdir(at('build'), { recursive: true });
// Two builds of the same source: build/cdquant.wasm owns its memory (one instance per thread,
// the copying path), build/cdquant-shared.wasm imports a shared memory (threads and atomics
// enabled) that one owning thread allocates in and worker instances run kernels on.
for (const target of ['release', 'shared']) {
  const { error, stderr } = await asc.main(
    ['assembly/index.ts', '--config', 'asconfig.json', '--target', target],
    { stdout: process.stdout, stderr: process.stderr },
  );
  if (error) {
    console.error(stderr?.toString?.() ?? '');
    console.error(`AssemblyScript build (${target}) failed:`, error.message);
    process.exit(1);
  }
}

// The wasm travels inside the JS as base64 too, so runtimes without file access
// (edge workers, data: URLs, single-file bundles) load the very same bytes.
const wasmInline = {
  name: 'cdquant-wasm-inline',
  setup(build) {
    build.onResolve({ filter: /^virtual:cdquant-wasm$/ }, () => ({ path: 'cdquant-wasm', namespace: 'cdquant-wasm' }));
    build.onLoad({ filter: /.*/, namespace: 'cdquant-wasm' }, async () => ({
      contents: `export const wasmBase64 = ${JSON.stringify((await readFile(at('build/cdquant.wasm'))).toString('base64'))};\n`
        + `export const sharedWasmBase64 = ${JSON.stringify((await readFile(at('build/cdquant-shared.wasm'))).toString('base64'))};`,
      loader: 'js',
    }));
  },
};

const common = { bundle: true, format: 'esm', target: 'es2022', sourcemap: 'linked', plugins: [wasmInline], logLevel: 'warning' };
// The library, the worker (started by the pool next to the library: build/worker.js) and the
// workerd entry are runtime-neutral ESM: no Node built-in is imported statically.
await esbuild.build({
  ...common,
  entryPoints: { index: at('src/index.ts'), worker: at('src/parallel/worker.ts') },
  outdir: at('build'),
  platform: 'neutral',
  mainFields: ['module', 'main'],
});
// build/workerd.js re-exports build/index.js and hands it the wasm imported as a module.
const keepExternal = (map) => ({
  name: 'keep-external',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => (args.path in map ? { path: map[args.path], external: true } : undefined));
  },
});
await esbuild.build({
  ...common,
  plugins: [keepExternal({ './index.js': './index.js', './cdquant.wasm': './cdquant.wasm' })],
  entryPoints: { workerd: at('src/workerd.ts') },
  outdir: at('build'),
  platform: 'neutral',
});
await esbuild.build({
  ...common,
  entryPoints: { cli: at('src/cli/cli.ts') },
  outdir: at('build'),
  platform: 'node',
  packages: 'external',
  banner: { js: '#!/usr/bin/env node' },
});

// The browser page (web/) -> build/web/.
await (await import('../web/build.mjs')).buildWeb({ root, common });

// TypeScript declarations -> build/types.
const tsc = spawnSync(process.execPath, [at('node_modules/typescript/bin/tsc'), '-p', at('tsconfig.json')], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('tsc (declarations) failed');
  process.exit(1);
}

if (withTests) {
  await rm(at('build/test'), { recursive: true, force: true });
  const tests = (await readdir(at('test'))).filter((f) => f.endsWith('.test.ts')).map((f) => at(`test/${f}`));
  await esbuild.build({ ...common, entryPoints: tests, outdir: at('build/test'), platform: 'node', packages: 'external' });
  // npm run fuzz's runner (the suite's long form): build/test/fuzz-cli.js, not a *.test.js.
  await esbuild.build({ ...common, entryPoints: { 'fuzz-cli': at('test/fuzz/cli.ts') }, outdir: at('build/test'), platform: 'node', packages: 'external' });
  // Cross-runtime entries (test/cross): 'cdquant' is the built package itself, kept external so
  // each runtime loads the real build/index.js (or build/workerd.js) and its build/worker.js.
  const cross = (entries, target) => esbuild.build({
    ...common,
    plugins: [keepExternal({ cdquant: target })],
    entryPoints: entries,
    outdir: at('build/test/cross'),
    platform: 'neutral',
  });
  await cross({ 'entry-cli': at('test/cross/entry-cli.ts'), 'entry-browser': at('test/cross/entry-browser.ts') }, '../../index.js');
  await cross({ 'entry-workerd': at('test/cross/entry-workerd.ts') }, '../../workerd.js');
}
