// Deterministic bench inputs: standard normals from xorshift128 uniforms (seeded by splitmix32)
// through Box-Muller. Benches need reproducible data, not statistical quality; the values are
// made in JS because they are inputs, never results.

/** A function that fills a Float32Array (or any numeric array) with the next normals of the
 * stream `seed`, and returns it. */
export function normals(seed) {
  let x = seed >>> 0;
  const mix = () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) | 0;
  };
  let a = mix(), b = mix(), c = mix(), d = mix() | 1;
  // In (0, 1): never 0, so the logarithm is finite.
  const next = () => {
    const t = a ^ (a << 11);
    a = b; b = c; c = d;
    d = (d ^ (d >>> 19) ^ t ^ (t >>> 8)) | 0;
    return ((d >>> 0) + 0.5) / 4294967296;
  };
  return (out) => {
    for (let i = 0; i < out.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(next())), phi = 2 * Math.PI * next();
      out[i] = r * Math.cos(phi);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(phi);
    }
    return out;
  };
}
