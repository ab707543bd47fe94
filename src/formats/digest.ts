// Provenance hashes via WebCrypto, which Node >= 18, Deno, Bun, browsers and workerd all provide.

/** Lower-case hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error('sha256Hex: WebCrypto (crypto.subtle) is not available in this runtime');
  // digest() wants an ArrayBuffer-backed view; copy only when the bytes live in a SharedArrayBuffer.
  const input = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : bytes.slice();
  const hash = new Uint8Array(await subtle.digest('SHA-256', input));
  return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
}
