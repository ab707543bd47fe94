#!/usr/bin/env node
// Serves the browser page (build/web/) on 127.0.0.1, cross-origin isolated (COOP/COEP, so the
// page can share memory with worker threads) unless --no-isolation. When the example data of a
// checkout exists (../shared/data next to the repository, or --data DIR), it is served under
// /data/ with a listing at /data/index.json, and the page offers it by default. Only files
// inside these folders are served: no dotfiles, no symlink that leads out of them.
//
//   node web/serve.mjs [--port 8080] [--host 127.0.0.1] [--no-isolation] [--data DIR]
//   (npm run web -- [flags]: builds first)
import { createServer } from 'node:http';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    'no-isolation': { type: 'boolean', default: false },
    data: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: node web/serve.mjs [--port 8080 (0: any free port)] [--host 127.0.0.1] [--no-isolation] [--data DIR]');
  process.exit(0);
}
const built = join(root, 'build', 'web');
if (!existsSync(join(built, 'index.html'))) {
  console.error(`cdquant web: ${built} has no page yet: run npm run build (or npm run web, which builds first)`);
  process.exit(1);
}
// Real paths: what is served must lie inside these once every symlink is resolved.
const site = realpathSync(built);
const givenData = resolve(values.data ?? join(root, '..', 'shared', 'data'));
const hasData = existsSync(givenData) && statSync(givenData).isDirectory();
const dataDir = hasData ? realpathSync(givenData) : givenData;
const isolation = !values['no-isolation'];

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png',
};

/** The files of the data folder, relative, '/'-separated (two levels: models are folders). */
async function listData(dir, prefix = '', depth = 0) {
  const out = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() && depth < 1) out.push(...(await listData(join(dir, e.name), `${prefix}${e.name}/`, depth + 1)));
    else if (e.isFile()) out.push(`${prefix}${e.name}`);
  }
  return out;
}

/** Whether `file` is `base` or below it (both absolute, resolved). */
function within(base, file) {
  const r = relative(base, file);
  return !r.startsWith('..') && !isAbsolute(r) && resolve(base, r) === file;
}

/** The real file under `base` (a real path) for the URL path `rel`, or null: when any part of
 * `rel` is a dotfile or dot folder (hidden files, '.', '..'), when it would leave `base`, or
 * when a symlink on the way leads out of `base` (symlinks that stay inside are followed). */
function inside(base, rel) {
  if (rel.split(/[\\/]/).some((part) => part.startsWith('.'))) return null;
  const file = resolve(base, '.' + sep + rel);
  if (!within(base, file)) return null;
  let real;
  try {
    real = realpathSync(file);
  } catch {
    return null;
  }
  return within(base, real) ? real : null;
}

const server = createServer(async (req, res) => {
  const headers = { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' };
  if (isolation) {
    headers['cross-origin-opener-policy'] = 'same-origin';
    headers['cross-origin-embedder-policy'] = 'require-corp';
    headers['cross-origin-resource-policy'] = 'same-origin';
  }
  const send = (status, body, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { ...headers, 'content-type': type });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
  let path;
  try {
    path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
  } catch {
    return send(400, 'bad path\n');
  }
  if (path.includes('\0')) return send(400, 'bad path\n');
  let file;
  if (path === '/data/index.json') {
    return send(200, JSON.stringify({ files: hasData ? await listData(dataDir) : [] }), MIME['.json']);
  } else if (path.startsWith('/data/')) {
    file = hasData ? inside(dataDir, path.slice('/data/'.length)) : null;
  } else {
    file = inside(site, path === '/' ? 'index.html' : path.slice(1));
  }
  let stat;
  try {
    stat = file && statSync(file);
  } catch {
    stat = null;
  }
  if (!stat || !stat.isFile()) return send(404, 'not found\n');
  res.writeHead(200, { ...headers, 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'content-length': stat.size });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file).on('error', () => res.destroy()).pipe(res);
});

server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  const host = values.host.includes(':') ? `[${values.host}]` : values.host;
  console.log(`cdquant web page: http://${host}:${port}/ (${isolation ? 'cross-origin isolated' : 'not isolated: one thread'}; examples ${hasData ? `from ${dataDir}` : 'not found'})`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
