// The README's main job: quantize the example model (stories260K) to 3 bits with CDQuant
// (CD from optimal weight clipping), then measure held-out perplexity before and after.
// Usage: node examples/stories.mjs [DATA_DIR] [extra cdquant quantize options...]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { mkdirSync } from 'node:fs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const data = process.argv[2] ?? join(root, '..', 'shared', 'data');
const extra = process.argv.slice(3);
const out = join(root, 'out', 'stories260K-cd-3bit');
const text = join(data, 'tinystories-valid-a.txt');
const common = ['--tokenizer', join(data, 'tok512.bin')];
// Calibrate on the first 1600 paragraphs, evaluate on 400 paragraphs calibration never saw.
const evalArgs = ['--text', text, '--paragraphs', '1600:2000', '--seqlen', '256', ...common];

function cdquant(args) {
  const run = spawnSync(process.execPath, [join(root, 'build', 'cli.js'), ...args], { stdio: 'inherit' });
  if (run.status !== 0) process.exit(run.status ?? 1);
}

// cdquant creates OUT itself but not its parent (a typo in a path should not grow folders).
mkdirSync(join(root, 'out'), { recursive: true });
cdquant(['quantize', join(data, 'stories260K.bin'), '--calib', text, '--calib-paragraphs', '0:1600', '--nsamples', '128', '--seqlen', '256',
  // --force: this example's own output folder is replaced whole on each run.
  '--method', 'cd', '--bits', '3', '--out', out, '--force', ...common, ...extra]);
console.log('\nperplexity before (fp32) and after (3-bit CD), held-out paragraphs 1600-1999:');
cdquant(['eval', join(data, 'stories260K.bin'), ...evalArgs]);
cdquant(['eval', join(out, 'dequantized', 'model.bin'), ...evalArgs]);
cdquant(['eval', join(out, 'gptq'), ...evalArgs]);
