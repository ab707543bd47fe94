// Deno and Bun run this (build/test/cross/entry-cli.js): the suite on the built package with
// 1-4 workers and the fault checks, one JSON line on stdout.
import * as lib from 'cdquant';
import { runSuite } from './suite.js';

const report = await runSuite(lib, { threads: [1, 2, 3, 4], faults: true });
console.log(JSON.stringify(report));
