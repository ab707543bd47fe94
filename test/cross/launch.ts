// Starts each runtime on the built suite and returns its report. Node-only test code.
// Every runtime must be present: a missing one is a failure with a set-up hint, never a skip.
import { execFile, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, relative, sep } from 'node:path';
import type { RunReport } from './suite.js';

export const ROOT = process.cwd();
const BUILD = join(ROOT, 'build');
const BIN = join(ROOT, 'node_modules', '.bin');
const SETUP = 'see the README set-up: apt-get install -y chromium && npm ci';

function bin(name: string): string {
  const path = join(BIN, name);
  if (!existsSync(path)) throw new Error(`${name} is not installed (${path} missing): it is a devDependency, run npm ci (${SETUP})`);
  return path;
}

function lastJsonLine(stdout: string, what: string): RunReport {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) throw new Error(`${what} printed no report; stdout:\n${stdout.slice(-2000)}`);
  return JSON.parse(line) as RunReport;
}

function run(file: string, args: string[], what: string, timeoutMs = 180_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, {
      cwd: ROOT,
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: 1 << 26,
      env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', BUN_DISABLE_TELEMETRY: '1' },
    }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${what} failed (${error.message.split('\n')[0]}):\n${String(stderr).slice(-3000)}\n${String(stdout).slice(-1000)}`));
      else resolve(String(stdout));
    });
  });
}

const ENTRY_CLI = join(BUILD, 'test', 'cross', 'entry-cli.js');

export async function runDeno(): Promise<RunReport> {
  const deno = bin('deno');
  return lastJsonLine(await run(deno, ['run', '--no-prompt', `--allow-read=${BUILD}`, ENTRY_CLI], 'deno'), 'deno');
}

export async function runBun(): Promise<RunReport> {
  const bun = bin('bun');
  return lastJsonLine(await run(bun, ['run', '--no-install', ENTRY_CLI], 'bun'), 'bun');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const MIME: Record<string, string> = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.map': 'application/json', '.html': 'text/html' };

/** Serves build/ on 127.0.0.1: /coi/... with COOP/COEP (cross-origin isolated: SharedArrayBuffer
 * can be posted), /plain/... without (no SharedArrayBuffer: the pool copies). */
async function serveBuild(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const [, mode, ...rest] = url.pathname.split('/');
    if (mode !== 'coi' && mode !== 'plain') {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = { 'cache-control': 'no-store' };
    if (mode === 'coi') {
      headers['cross-origin-opener-policy'] = 'same-origin';
      headers['cross-origin-embedder-policy'] = 'require-corp';
      headers['cross-origin-resource-policy'] = 'same-origin';
    }
    const path = rest.join('/');
    if (path === 'page.html') {
      res.writeHead(200, { ...headers, 'content-type': 'text/html' });
      res.end('<!doctype html><meta charset="utf-8"><title>cdquant</title><script type="module" src="./test/cross/entry-browser.js"></script>');
      return;
    }
    const file = normalize(join(BUILD, path));
    if (relative(BUILD, file).startsWith('..') || !file.startsWith(BUILD + sep) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': MIME[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

export const CHROMIUM = process.env.CDQUANT_CHROMIUM ?? '/usr/bin/chromium';

/** Runs the suite in headless Chromium, once cross-origin isolated and once not. */
export async function runChromium(): Promise<{ isolated: RunReport & { crossOriginIsolated: boolean }; plain: RunReport & { crossOriginIsolated: boolean } }> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (set CDQUANT_CHROMIUM to another path, or ${SETUP})`);
  let playwright: typeof import('playwright-core');
  try {
    playwright = await import('playwright-core');
  } catch {
    throw new Error(`playwright-core is not installed: run npm ci (${SETUP})`);
  }
  const { server, origin } = await serveBuild();
  const profile = mkdtempSync(join(tmpdir(), 'cdquant-chromium-'));
  let context: Awaited<ReturnType<typeof playwright.chromium.launchPersistentContext>> | undefined;
  try {
    context = await playwright.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const one = async (mode: 'coi' | 'plain') => {
      const page = await context!.newPage();
      const log: string[] = [];
      page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
      try {
        await page.goto(`${origin}/${mode}/page.html`, { timeout: 30_000 });
        const handle = await page.waitForFunction(() => (globalThis as any).__cdquant, null, { timeout: 150_000 });
        const out = (await handle.jsonValue()) as { ok: boolean; report?: RunReport; error?: string; crossOriginIsolated: boolean };
        if (!out.ok) throw new Error(`chromium (${mode}) suite failed: ${out.error}\n${log.join('\n')}`);
        return { ...out.report!, crossOriginIsolated: out.crossOriginIsolated };
      } catch (e) {
        throw new Error(`${(e as Error).message}\nbrowser console:\n${log.slice(-30).join('\n')}`);
      } finally {
        await page.close();
      }
    };
    return { isolated: await one('coi'), plain: await one('plain') };
  } finally {
    await context?.close().catch(() => {});
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Runs the suite in workerd: a config written here serves build/test/cross/entry-workerd.js with
 * build/workerd.js as 'cdquant' and build/cdquant.wasm as a wasm module, on 127.0.0.1. */
export async function runWorkerd(): Promise<RunReport> {
  const workerd = bin('workerd');
  const port = await freePort();
  // `embed` paths are relative to the config file, so the config lives in build/.
  const config = join(BUILD, `workerd-test-${process.pid}.capnp`);
  writeFileSync(config, `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .suite) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const suite :Workerd.Worker = (
  modules = [
    (name = "test/cross/entry-workerd.js", esModule = embed "test/cross/entry-workerd.js"),
    (name = "workerd.js", esModule = embed "workerd.js"),
    (name = "index.js", esModule = embed "index.js"),
    (name = "cdquant.wasm", wasm = embed "cdquant.wasm"),
  ],
  compatibilityDate = "2024-09-23",
);
`);
  const child = spawn(workerd, ['serve', config], { cwd: BUILD, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => (stderr += d));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`workerd exited (code ${code}):\n${stderr.slice(-3000)}`))));
  exited.catch(() => {});
  const deadline = Date.now() + 120_000;
  try {
    for (;;) {
      try {
        const res = await Promise.race([fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(100_000) }), exited]);
        const text = await res.text();
        if (!res.ok) throw Object.assign(new Error(`workerd suite failed (${res.status}): ${text}\n${stderr.slice(-2000)}`), { final: true });
        return JSON.parse(text) as RunReport;
      } catch (e) {
        if (child.exitCode !== null || child.signalCode !== null) await exited;
        if ((e as any).final || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200)); // not listening yet
      }
    }
  } finally {
    child.kill('SIGKILL');
    rmSync(config, { force: true });
  }
}
