// Deterministic bench inputs: xorshift128 uniforms (seeded by splitmix32) and normals from
// them by Box-Muller. Benches need reproducible data, not statistical quality; the values are
// made in JS because they are inputs, never results.

/** The uniform stream `seed`, in (0, 1): never 0, so a logarithm of it is finite. */
export function uniforms(seed) {
  let x = seed >>> 0;
  const mix = () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) | 0;
  };
  let a = mix(), b = mix(), c = mix(), d = mix() | 1;
  return () => {
    const t = a ^ (a << 11);
    a = b; b = c; c = d;
    d = (d ^ (d >>> 19) ^ t ^ (t >>> 8)) | 0;
    return ((d >>> 0) + 0.5) / 4294967296;
  };
}

/** One value at a time: `normal()` uses a fresh pair of uniforms per value (the cosine half). */
export function randomStream(seed) {
  const uniform = uniforms(seed);
  return { uniform, normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()) };
}

/** A function that fills a Float32Array (or any numeric array) with the next normals of the
 * stream `seed` (both halves of each Box-Muller pair), and returns it. */
export function normals(seed) {
  const next = uniforms(seed);
  return (out) => {
    for (let i = 0; i < out.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(next())), phi = 2 * Math.PI * next();
      out[i] = r * Math.cos(phi);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(phi);
    }
    return out;
  };
}
