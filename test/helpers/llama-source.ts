// llama.cpp's own source, as node-llama-cpp ships it (node_modules/node-llama-cpp/llama/
// gitRelease.bundle, the source of the very binary the tests run): cloned once into
// out/llama.cpp-<commit>/ without a work tree, and only the paths a test asks for checked out.
// The tests read the converter (conversion/) and its vocabulary test files (models/) from it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const BUNDLE = join(process.cwd(), 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');

function git(args: string[], cwd?: string): string {
  const r = spawnSync('git', args, { encoding: 'utf8', cwd });
  if (r.error) throw new Error(`llama.cpp source: could not run git (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); install it (apt-get install -y git)`);
  if (r.status !== 0) throw new Error(`llama.cpp source: git ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

let clone: { dir: string; head: string } | undefined;

/** A checkout of llama.cpp's source holding (at least) `pathspecs`; returns its folder. */
export function llamaCppSource(...pathspecs: string[]): string {
  if (!clone) {
    if (!existsSync(BUNDLE)) throw new Error(`llama.cpp source: ${BUNDLE} is missing (node-llama-cpp not installed?)`);
    const head = git(['bundle', 'list-heads', BUNDLE]).trim().split(/\s+/)[0];
    const dir = join(process.cwd(), 'out', `llama.cpp-${head.slice(0, 12)}`);
    if (!existsSync(join(dir, '.git'))) {
      const work = `${dir}.tmp-${process.pid}`;
      rmSync(work, { recursive: true, force: true });
      mkdirSync(join(process.cwd(), 'out'), { recursive: true });
      git(['clone', '--quiet', '--no-checkout', BUNDLE, work]);
      rmSync(dir, { recursive: true, force: true });
      renameSync(work, dir);
    }
    clone = { dir, head };
  }
  if (pathspecs.length) git(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', clone.head, '--', ...pathspecs], clone.dir);
  return clone.dir;
}
