// The fan-out band worker as a workerd / Cloudflare Workers module. 'cdquant' resolves to
// build/workerd.js under the `workerd` export condition (wrangler and run-local.mjs both do
// this), which imports cdquant.wasm as a compiled module: workerd cannot compile wasm bytes.
import { createFanoutWorker } from 'cdquant';

export default createFanoutWorker();
