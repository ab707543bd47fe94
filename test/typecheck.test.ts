// The tests and the browser page are TypeScript too; esbuild strips their types without
// checking them, so a wrong call into the API would only show as a runtime failure (or not
// at all). This runs the checker over src + test and over the page, as `npm run typecheck` does.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');

for (const project of ['tsconfig.tests.json', 'web/tsconfig.json']) {
  test(`tsc --noEmit -p ${project} reports no errors`, () => {
    const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', join(root, project)], { cwd: root, encoding: 'utf8' });
    assert.is(run.status, 0, `type errors in ${project}:\n${run.stdout}${run.stderr}`);
  });
}

test.run();
