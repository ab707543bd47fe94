import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';

test('wasm loads and allocates', async () => {
  const k = await Kernel.create();
  const p = k.put(new Float32Array([1, 2, 3]));
  assert.equal(Array.from(k.f32(p, 3)), [1, 2, 3]);
  k.free(p);
});

test.run();
