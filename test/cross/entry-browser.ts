// Headless Chromium loads this from a page on 127.0.0.1; the test reads window.__cdquant.
import * as lib from 'cdquant';
import { runSuite } from './suite.js';

const g = globalThis as any;
runSuite(lib, { threads: [1, 2, 3, 4], faults: true }).then(
  (report) => (g.__cdquant = { ok: true, report, crossOriginIsolated: g.crossOriginIsolated }),
  (e) => (g.__cdquant = { ok: false, error: String(e?.stack ?? e) }),
);
