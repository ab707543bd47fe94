// The page's server (web/serve.mjs) serves only what lies inside its folders (issue 14, case
// 12): no dotfiles, no symlink that leads out of --data (or of the build folder, by the same
// check), no traversal by encoded dots; symlinks that stay inside still work.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = process.cwd();
const base = mkdtempSync(join(tmpdir(), 'cdquant-serve-'));
const data = join(base, 'data');
const outside = join(base, 'outside');
mkdirSync(join(data, 'model'), { recursive: true });
mkdirSync(join(data, '.git'), { recursive: true });
mkdirSync(outside, { recursive: true });
writeFileSync(join(data, 'text.txt'), 'served\n');
writeFileSync(join(data, 'model', 'config.json'), '{}');
writeFileSync(join(data, '.secret'), 'dotfile\n');
writeFileSync(join(data, '.git', 'config'), 'dot folder\n');
writeFileSync(join(data, 'model', '.hidden'), 'nested dotfile\n');
writeFileSync(join(outside, 'private.txt'), 'outside\n');
symlinkSync(join(outside, 'private.txt'), join(data, 'link-out.txt'));
symlinkSync(outside, join(data, 'dir-out'));
symlinkSync(join(data, 'text.txt'), join(data, 'link-in.txt'));
symlinkSync('../text.txt', join(data, 'model', 'relative-in.txt'));

let server: ChildProcess | null = null;
let url = '';

test.before(async () => {
  server = spawn(process.execPath, [join(ROOT, 'web', 'serve.mjs'), '--port', '0', '--data', data], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`web server did not start:\n${out}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    };
    server!.stdout!.on('data', onData);
    server!.stderr!.on('data', onData);
    server!.once('exit', (code) => reject(new Error(`web server exited (${code}):\n${out}`)));
  });
});

test.after(() => {
  server?.kill('SIGTERM');
  rmSync(base, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url + path.replace(/^\//, ''));
  return { status: res.status, text: await res.text() };
}

test('files inside --data are served, symlinks that stay inside too', async () => {
  assert.equal(await get('/data/text.txt'), { status: 200, text: 'served\n' });
  assert.is((await get('/data/model/config.json')).status, 200);
  assert.equal(await get('/data/link-in.txt'), { status: 200, text: 'served\n' });
  assert.equal(await get('/data/model/relative-in.txt'), { status: 200, text: 'served\n' });
  assert.is((await get('/')).status, 200, 'the page itself');
});

test('symlinks out of --data are not followed', async () => {
  for (const path of ['/data/link-out.txt', '/data/dir-out/private.txt']) {
    const r = await get(path);
    assert.is(r.status, 404, path);
    assert.not.match(r.text, /outside/);
  }
});

test('dotfiles and dot folders are not served, nor listed', async () => {
  for (const path of ['/data/.secret', '/data/.git/config', '/data/model/.hidden', '/data/%2esecret', '/.well-known/x']) {
    assert.is((await get(path)).status, 404, path);
  }
  const listing = JSON.parse((await get('/data/index.json')).text) as { files: string[] };
  assert.ok(listing.files.includes('text.txt'));
  assert.ok(!listing.files.some((f) => f.split('/').some((s) => s.startsWith('.'))), listing.files.join(', '));
});

test('encoded traversal stays inside', async () => {
  for (const path of ['/data/..%2foutside%2fprivate.txt', '/data/%2e%2e/outside/private.txt', '/%2e%2e/%2e%2e/package.json', '/data/model/..%5c..%5coutside%5cprivate.txt']) {
    const r = await get(path);
    assert.is(r.status === 404 || r.status === 400, true, `${path}: ${r.status}`);
    assert.not.match(r.text, /outside|"name"/);
  }
});

test.run();
