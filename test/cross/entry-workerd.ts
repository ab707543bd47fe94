// workerd runs this as its main module, with build/workerd.js as 'cdquant' (the wasm imported
// as a compiled module and passed to setWasmSource). No workers there: the pool falls back to
// this thread, so pool2 must give the same bits.
import * as lib from 'cdquant';
import { runSuite } from './suite.js';

export default {
  async fetch(): Promise<Response> {
    try {
      const report = await runSuite(lib, { threads: [2] });
      return new Response(JSON.stringify(report), { headers: { 'content-type': 'application/json' } });
    } catch (e) {
      return new Response(String((e as Error)?.stack ?? e), { status: 500 });
    }
  },
};
