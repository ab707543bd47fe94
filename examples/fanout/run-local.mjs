#!/usr/bin/env node
// Starts N local workerd instances of the fan-out band worker on 127.0.0.1 and prints their
// URLs (one comma-separated line for `cdquant quantize --workers-url`). Ctrl-C stops them.
//
//   npm run build && node examples/fanout/run-local.mjs 3
//
// Also a module: startLocalWorkers({ count }) -> { urls, instances, kill(i), close() } (the
// end-to-end test uses it). Each instance is its own workerd process, so one can be killed.
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bundles examples/fanout/worker.ts to build/fanout-worker.js with 'cdquant' kept external
 * as ./workerd.js (so build/workerd.js, build/index.js and build/cdquant.wasm are its modules). */
export async function buildWorker(root) {
  for (const f of ['workerd.js', 'index.js', 'cdquant.wasm']) {
    if (!existsSync(join(root, 'build', f))) throw new Error(`build/${f} is missing: run npm run build first`);
  }
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: [join(root, 'examples', 'fanout', 'worker.ts')],
    outfile: join(root, 'build', 'fanout-worker.js'),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'neutral',
    logLevel: 'warning',
    plugins: [{
      name: 'cdquant-external',
      setup(build) {
        build.onResolve({ filter: /^cdquant$/ }, () => ({ path: './workerd.js', external: true }));
      },
    }],
  });
}

/** The capnp config: one service, the worker's modules embedded from build/ (paths relative
 * to the config file, which therefore lives in build/). The socket address is set per process
 * on the command line. */
function capnpConfig(compatibilityDate) {
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .bandWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ],
);
const bandWorker :Workerd.Worker = (
  modules = [
    (name = "fanout-worker.js", esModule = embed "fanout-worker.js"),
    (name = "workerd.js", esModule = embed "workerd.js"),
    (name = "index.js", esModule = embed "index.js"),
    (name = "cdquant.wasm", wasm = embed "cdquant.wasm"),
  ],
  compatibilityDate = "${compatibilityDate}",
);
`;
}

/**
 * Starts `count` workerd processes serving the band worker on 127.0.0.1 (ports: `ports[i]`, or
 * free ones the OS picks, reported back by workerd over its control fd). Resolves when every
 * instance answers GET /. Always call close() (it is also run on process exit).
 */
export async function startLocalWorkers({ count = 3, root = process.cwd(), ports = [], host = '127.0.0.1', compatibilityDate = '2024-09-23', startTimeoutMs = 30_000, log = () => {} } = {}) {
  const build = join(root, 'build');
  const workerd = join(root, 'node_modules', '.bin', 'workerd');
  if (!existsSync(workerd)) throw new Error(`workerd is not installed (${workerd}): run npm ci`);
  await buildWorker(root);
  const config = join(build, `fanout-workerd-${process.pid}-${Date.now().toString(36)}.capnp`);
  writeFileSync(config, capnpConfig(compatibilityDate));

  const instances = [];
  const killAll = () => {
    for (const i of instances) i.kill();
  };
  const onExit = () => {
    killAll();
    rmSync(config, { force: true });
  };
  process.once('exit', onExit);

  const startOne = (index) => new Promise((resolveStart, reject) => {
    const child = spawn(workerd, ['serve', config, '--socket-addr', `http=${host}:${ports[index] ?? 0}`, '--control-fd', '3'], {
      cwd: build,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output = (output + d).slice(-4000)));
    child.stderr.on('data', (d) => (output = (output + d).slice(-4000)));
    const instance = {
      index,
      child,
      pid: child.pid,
      url: '',
      port: 0,
      get alive() { return child.exitCode === null && child.signalCode === null; },
      kill() { if (instance.alive) child.kill('SIGKILL'); },
      output: () => output,
    };
    instances.push(instance);
    const timer = setTimeout(() => reject(new Error(`workerd #${index} did not report a listening port within ${startTimeoutMs} ms:\n${output}`)), startTimeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`workerd #${index} exited (${signal ?? code}) while starting:\n${output}`));
    });
    let control = '';
    child.stdio[3].on('data', (d) => {
      control += d;
      for (const line of control.split('\n').slice(0, -1)) {
        try {
          const m = JSON.parse(line);
          if (m.event === 'listen' && m.socket === 'http') {
            clearTimeout(timer);
            instance.port = m.port;
            instance.url = `http://${host}:${m.port}`;
            resolveStart(instance);
          }
        } catch { /* not a control message */ }
      }
      control = control.slice(control.lastIndexOf('\n') + 1);
    });
  });

  try {
    await Promise.all(Array.from({ length: count }, (_, i) => startOne(i)));
    // Listening is not quite serving: wait until each answers GET / (the module is loaded).
    const deadline = Date.now() + startTimeoutMs;
    for (const i of instances) {
      for (;;) {
        try {
          const res = await fetch(`${i.url}/`, { signal: AbortSignal.timeout(5000) });
          const info = await res.json();
          if (info.service === 'cdquant-fanout') break;
        } catch (e) {
          if (!i.alive || Date.now() > deadline) throw new Error(`workerd #${i.index} at ${i.url} is not serving: ${e?.message}\n${i.output()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      log(`workerd #${i.index} (pid ${i.pid}) serving ${i.url}`);
    }
  } catch (e) {
    onExit();
    process.removeListener('exit', onExit);
    throw e;
  }
  return {
    urls: instances.map((i) => i.url),
    instances,
    kill: (index) => instances[index].kill(),
    async close() {
      killAll();
      await Promise.all(instances.map((i) => (i.alive ? new Promise((r) => i.child.once('exit', r)) : null)));
      rmSync(config, { force: true });
      process.removeListener('exit', onExit);
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 3);
  const portFlag = args.indexOf('--port');
  const base = portFlag >= 0 ? Number(args[portFlag + 1]) : 0;
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const workers = await startLocalWorkers({
    count,
    root,
    ports: base ? Array.from({ length: count }, (_, i) => base + i) : [],
    log: (s) => console.error(s),
  });
  console.log(workers.urls.join(','));
  console.error(`${count} band workers up; e.g.\n  node build/cli.js quantize ../shared/data/stories260K.bin --calib ../shared/data/tinystories-valid-a.txt --out out/fanout --workers-url ${workers.urls.join(',')}\nCtrl-C stops them.`);
  const stop = async () => {
    await workers.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
