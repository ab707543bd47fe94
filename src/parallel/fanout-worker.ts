// The band worker of the fan-out protocol (see src/parallel/fanout.ts): an HTTP handler that solves one
// row band of one prepared layer per request. Runtime-neutral (Request/Response, crypto.subtle):
// `export default createFanoutWorker()` is a complete workerd / Cloudflare Workers module
// (import it from 'cdquant', which resolves to build/workerd.js there, so the wasm comes in as
// an imported module); in Node, Deno or Bun pass its fetch() to any HTTP server.
import { CdquantError } from '../core/errors.js';
import { FANOUT_HEADERS, FANOUT_PROTOCOL, FanoutProtocolError, decodeBandRequest, type FanoutErrorCode } from './fanout.js';
import { sha256Hex } from '../formats/digest.js';
import { decodePrepared, encodeBand, encodeGgufBand } from './frame.js';
import { solveGgufBand } from './gguf-band.js';
import { defaultKernel } from '../core/kernel.js';
import { LayerSession } from '../core/session.js';
import type { PreparedLayer } from '../core/types.js';
import { runtimeName } from '../core/runtime.js';

export interface FanoutWorkerOptions {
  /** Bytes of prepared layers kept (least recently used dropped first; the newest is always
   * kept). Default 64 MiB: an edge isolate has 128 MB in all. */
  cacheBytes?: number;
  /** Largest request body accepted. Default 100 MiB (Cloudflare's limit on most plans). */
  maxBodyBytes?: number;
  /** Answer only requests with `authorization: Bearer <token>`. Default: the
   * CDQUANT_FANOUT_TOKEN binding (a Workers secret) when the platform passes one, else none. */
  token?: string;
}

export interface FanoutWorker {
  /** The module-worker handler: `env` (bindings) is read for CDQUANT_FANOUT_TOKEN. */
  fetch(request: Request, env?: Record<string, unknown>): Promise<Response>;
}

const STATUS: Record<FanoutErrorCode, number> = {
  HASH_MISMATCH: 400,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  BAD_METHOD: 405,
  PREPARED_MISSING: 409,
  TOO_LARGE: 413,
  INTERNAL: 500,
};

function errorReply(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ code, message }), {
    status,
    headers: { 'content-type': 'application/json', [FANOUT_HEADERS.error]: code },
  });
}

const preparedSize = (p: PreparedLayer) =>
  p.hessian.byteLength + p.dead.byteLength + p.gIdx.byteLength + (p.perm?.byteLength ?? 0) + (p.gptqFactor?.byteLength ?? 0);

/** A band worker: its own cache of prepared layers and one loaded LayerSession. */
export function createFanoutWorker(options: FanoutWorkerOptions = {}): FanoutWorker {
  const cacheBytes = options.cacheBytes ?? 64 * 2 ** 20;
  const maxBodyBytes = options.maxBodyBytes ?? 100 * 2 ** 20;
  const cache = new Map<string, { prepared: PreparedLayer; size: number }>();
  let cached = 0;
  // The session of the layer solved last: its H-side arrays stay in wasm memory between bands.
  let session: { hash: string; session: LayerSession } | null = null;

  const remember = (hash: string, prepared: PreparedLayer) => {
    const old = cache.get(hash);
    if (old) {
      cache.delete(hash);
      cached -= old.size;
    }
    const size = preparedSize(prepared);
    cache.set(hash, { prepared, size });
    cached += size;
    for (const [h, e] of cache) {
      if (cached <= cacheBytes || h === hash) break;
      cache.delete(h);
      cached -= e.size;
      if (session?.hash === h) {
        session.session.free();
        session = null;
      }
    }
  };
  const lookup = (hash: string) => {
    const e = cache.get(hash);
    if (e) {
      cache.delete(hash); // most recently used last
      cache.set(hash, e);
    }
    return e?.prepared;
  };

  const readBody = async (request: Request): Promise<Uint8Array> => {
    const declared = Number(request.headers.get('content-length') ?? NaN);
    if (declared > maxBodyBytes) throw new FanoutProtocolError('TOO_LARGE', `body of ${declared} bytes exceeds ${maxBodyBytes}`);
    const body = new Uint8Array(await request.arrayBuffer());
    if (body.length > maxBodyBytes) throw new FanoutProtocolError('TOO_LARGE', `body of ${body.length} bytes exceeds ${maxBodyBytes}`);
    return body;
  };

  const acceptPrepared = async (hash: string, bytes: Uint8Array): Promise<PreparedLayer> => {
    const actual = await sha256Hex(bytes);
    if (actual !== hash) throw new FanoutProtocolError('HASH_MISMATCH', `prepared bytes have SHA-256 ${actual}, not ${hash}`);
    let prepared: PreparedLayer;
    try {
      prepared = decodePrepared(bytes);
    } catch (e) {
      throw new FanoutProtocolError('BAD_REQUEST', `prepared bytes do not decode: ${(e as Error).message}`);
    }
    remember(hash, prepared);
    return prepared;
  };

  const putPrepared = async (request: Request, hash: string): Promise<Response> => {
    await acceptPrepared(hash, await readBody(request));
    return new Response(JSON.stringify({ hash, cached: cache.size }), { status: 201, headers: { 'content-type': 'application/json' } });
  };

  const solve = async (request: Request): Promise<Response> => {
    const body = await readBody(request);
    const claimed = request.headers.get(FANOUT_HEADERS.job);
    if (!claimed) throw new FanoutProtocolError('BAD_REQUEST', `no ${FANOUT_HEADERS.job} header`);
    const jobHash = await sha256Hex(body);
    if (jobHash !== claimed) throw new FanoutProtocolError('HASH_MISMATCH', `job body has SHA-256 ${jobHash}, the request says ${claimed}`);
    const { header, inlinePrepared, weights } = decodeBandRequest(body);
    const weightsHash = await sha256Hex(new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength));
    if (weightsHash !== header.weights) throw new FanoutProtocolError('HASH_MISMATCH', `weights have SHA-256 ${weightsHash}, the request says ${header.weights}`);
    const prepared = inlinePrepared ? await acceptPrepared(header.prepared, inlinePrepared) : lookup(header.prepared);
    if (!prepared) throw new FanoutProtocolError('PREPARED_MISSING', `prepared layer ${header.prepared} is not cached here: PUT /prepared/${header.prepared} or send it inline`);
    if (prepared.plan.cols !== header.cols) throw new FanoutProtocolError('BAD_REQUEST', `band request has ${header.cols} columns, the prepared layer ${prepared.plan.cols}`);
    const kernel = await defaultKernel();
    // From here to the reply bytes nothing awaits: concurrent requests in one isolate cannot
    // interleave between choosing the session and solving on it.
    if (session?.hash !== header.prepared) {
      session?.session.free();
      session = null;
      session = { hash: header.prepared, session: LayerSession.fromPrepared(kernel, prepared) };
    }
    const rows = header.r1 - header.r0;
    // Rows are independent: the band's rows alone give the same bits as the whole matrix.
    const data = { data: weights, rows, cols: header.cols };
    let out: Uint8Array;
    if (header.gguf) {
      const band = solveGgufBand(session.session, data, 0, rows, header.gguf);
      band.r0 = header.r0;
      band.r1 = header.r1;
      out = encodeGgufBand(band);
    } else {
      const band = session.session.solveBand(data, 0, rows, header.baseline ?? false);
      band.r0 = header.r0;
      band.r1 = header.r1;
      out = encodeBand(band);
    }
    return new Response(out as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: {
        'content-type': 'application/octet-stream',
        [FANOUT_HEADERS.band]: await sha256Hex(out),
        [FANOUT_HEADERS.job]: jobHash,
        [FANOUT_HEADERS.prepared]: header.prepared,
        [FANOUT_HEADERS.weights]: weightsHash,
        [FANOUT_HEADERS.rows]: `${header.r0}-${header.r1}`,
      },
    });
  };

  return {
    async fetch(request: Request, env?: Record<string, unknown>): Promise<Response> {
      try {
        const token = options.token ?? (typeof env?.CDQUANT_FANOUT_TOKEN === 'string' ? env.CDQUANT_FANOUT_TOKEN : undefined);
        if (token && !sameText(request.headers.get('authorization') ?? '', `Bearer ${token}`)) {
          return errorReply(STATUS.UNAUTHORIZED, 'UNAUTHORIZED', 'this band worker needs authorization: Bearer <token>');
        }
        const { pathname } = new URL(request.url);
        const m = /^\/prepared\/([0-9a-f]{64})$/.exec(pathname);
        if (pathname === '/' && (request.method === 'GET' || request.method === 'HEAD')) {
          return new Response(JSON.stringify({ service: 'cdquant-fanout', protocol: FANOUT_PROTOCOL, runtime: runtimeName(), cached: cache.size, cachedBytes: cached }), {
            headers: { 'content-type': 'application/json' },
          });
        }
        if (pathname === '/band') {
          if (request.method !== 'POST') return errorReply(STATUS.BAD_METHOD, 'BAD_METHOD', 'POST a band request to /band');
          return await solve(request);
        }
        if (m) {
          if (request.method !== 'PUT') return errorReply(STATUS.BAD_METHOD, 'BAD_METHOD', 'PUT prepared bytes to /prepared/<sha256>');
          return await putPrepared(request, m[1]);
        }
        return errorReply(STATUS.NOT_FOUND, 'NOT_FOUND', `no route ${request.method} ${pathname} (GET /, PUT /prepared/<sha256>, POST /band)`);
      } catch (e) {
        if (e instanceof FanoutProtocolError) return errorReply(STATUS[e.code], e.code, e.message);
        if (e instanceof CdquantError) return errorReply(422, e.code, e.message);
        // The message only: a stack would show the worker's internals to whoever sent the request.
        return errorReply(500, 'INTERNAL', `the band worker failed: ${(e as Error)?.message ?? String(e)}`);
      }
    },
  };
}

/** String equality whose time does not depend on where the strings differ. */
function sameText(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}
