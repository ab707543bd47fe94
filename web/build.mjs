// Builds the browser page into build/web/: the page script, its job worker and the pool's
// worker (next to the job worker, where WorkerPool looks for it), plus the HTML and CSS.
// Everything is bundled (the wasm inlined): the folder works offline and from any static host.
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as esbuild from 'esbuild';

/** `common`: the esbuild options of scripts/build.mjs (bundle, esm, the wasm-inline plugin). */
export async function buildWeb({ root, common }) {
  const out = join(root, 'build', 'web');
  await mkdir(out, { recursive: true });
  await esbuild.build({
    ...common,
    entryPoints: {
      main: join(root, 'web', 'main.ts'),
      'job-worker': join(root, 'web', 'job-worker.ts'),
      worker: join(root, 'src', 'parallel', 'worker.ts'),
    },
    outdir: out,
    platform: 'browser',
  });
  for (const f of ['index.html', 'style.css']) await copyFile(join(root, 'web', f), join(out, f));
}
