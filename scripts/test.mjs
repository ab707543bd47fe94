// Runs the uvu suites in build/test and ends with the one line CI reads:
// "N passed, N failed", counted from uvu's own totals.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = { ...process.env };
delete env.FORCE_COLOR;
const run = spawnSync(process.execPath, [join(root, 'node_modules/uvu/bin.js'), 'build/test', '\\.test\\.js$', '--no-color'], {
  cwd: root,
  encoding: 'utf8',
  maxBuffer: 1 << 28,
  env,
});
process.stdout.write(run.stdout);
process.stderr.write(run.stderr);
const count = (label) => Number((run.stdout.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
const total = count('Total');
const passed = count('Passed');
if (!Number.isFinite(total) || !Number.isFinite(passed)) {
  console.log('0 passed, 1 failed');
  console.error('test runner: could not read uvu totals (did a suite crash before reporting?)');
  process.exit(1);
}
const skipped = count('Skipped') || 0;
const failed = total - passed - skipped + (run.status !== 0 && total === passed + skipped ? 1 : 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || run.status !== 0 ? 1 : 0);
