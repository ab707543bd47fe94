// The fuzz suite in `npm test` (issue 14): every input format cdquant reads, mutated in
// structure (lengths, counts, offsets, dtypes, shapes, JSON field types, truncation, swapped
// sections; see test/fuzz/), seeded, a few thousand cases in all. Each case must end in a
// typed error (CdquantError, FanoutProtocolError) or a valid output checked against what the
// format promises; never another exception, a hang (watchdog), a case over 5 s, or memory
// growth past 64 MiB + 16 x the input's size. `npm run fuzz` runs many more from a fresh seed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PENDING, TARGETS } from './fuzz/targets.js';
import { describeFailure, runTarget, startWatchdog, summary } from './fuzz/runner.js';

const SEED = 14;
/** Cases per target: 6000 in all, about 6 s on the 2-core test machine. */
const CASES: Record<string, number> = {
  safetensors: 1000, llama2c: 800, 'tokenizer.bin': 600, 'tokenizer.json': 400, 'config.json': 1000, 'hf-checkpoint': 600, 'hf-lazy': 400, 'gptq-checkpoint': 500, gguf: 1000, 'band-frames': 800, 'fanout-worker': 300,
};

startWatchdog(TARGETS, SEED);
const lines: string[] = [];

for (const target of TARGETS) {
  test(`fuzz ${target.name}: ${CASES[target.name]} seeded cases end in a typed error or a valid output`, async () => {
    await target.setup();
    const s = await runTarget(target, { seed: SEED, cases: CASES[target.name] });
    lines.push(summary(s));
    assert.is(s.failures.length, 0, `${s.failures.length} failures:\n${s.failures.slice(0, 5).map(describeFailure).join('\n')}`);
    // The mutations reach past the first check: some cases are refused, some read through.
    assert.ok(s.typed > 0 && s.valid > 0, `${s.typed} typed errors, ${s.valid} valid outputs: the mutations do not reach both`);
  });
}

test.after(() => {
  for (const l of lines) console.log(`  ${l}`);
  for (const p of PENDING) console.log(`  ${p.name}: not fuzzed yet (${p.why})`);
});

test.run();
