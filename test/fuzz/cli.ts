// npm run fuzz: many more cases than the test suite runs, from a fresh seed unless one is given.
//   npm run fuzz -- [--cases N per target] [--seed S] [--target NAME[,NAME]] [--case I] [--minutes M]
// Prints cases run / typed errors / valid outputs / failures per target and in all; exits 1 on
// any failure. --case I runs that one case and prints what it did and how it ended.
import { parseArgs } from 'node:util';
import { Rng, caseSeed } from './mutate.js';
import { PENDING, TARGETS, isTyped } from './targets.js';
import { describeFailure, runTarget, startWatchdog, summary } from './runner.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '20000' },
    seed: { type: 'string' },
    target: { type: 'string' },
    case: { type: 'string' },
    minutes: { type: 'string', default: '30' },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const wanted = values.target ? values.target.split(',') : null;
const targets = TARGETS.filter((t) => !wanted || wanted.includes(t.name));
if (wanted && targets.length !== wanted.length) {
  console.error(`fuzz: unknown target in ${values.target} (targets: ${TARGETS.map((t) => t.name).join(', ')})`);
  process.exit(2);
}
for (const t of targets) await t.setup();

if (values.case !== undefined) {
  const index = Number(values.case);
  for (const t of targets) {
    const input = t.make(new Rng(caseSeed(seed, t.name, index)));
    console.log(`${t.name} case ${index} (seed ${seed}): ${input.what} (${input.size} bytes)`);
    try {
      const r = await t.run(input.data);
      console.log(`  valid output: ${String(r)}`);
    } catch (e) {
      console.log(`  ${isTyped(e) ? 'typed error' : 'FAILURE'}: ${(e as Error)?.stack ?? String(e)}`);
    }
  }
  process.exit(0);
}

const cases = Number(values.cases);
const perTarget = (Number(values.minutes) * 60_000) / targets.length;
console.log(`fuzz: seed ${seed}, up to ${cases} cases per target, ${targets.length} targets${PENDING.length ? `; not covered yet: ${PENDING.map((p) => `${p.name} (${p.why})`).join(', ')}` : ''}`);
startWatchdog(targets, seed);
const all = { cases: 0, typed: 0, valid: 0, failures: 0 };
for (const t of targets) {
  const s = await runTarget(t, { seed, cases, timeLimitMs: perTarget });
  console.log(summary(s));
  for (const f of s.failures.slice(0, 10)) console.log(`  ${describeFailure(f)}`);
  if (s.failures.length > 10) console.log(`  ... and ${s.failures.length - 10} more`);
  all.cases += s.cases;
  all.typed += s.typed;
  all.valid += s.valid;
  all.failures += s.failures.length;
}
console.log(`all targets: cases run ${all.cases} / typed errors ${all.typed} / valid outputs ${all.valid} / failures ${all.failures}`);
process.exit(all.failures ? 1 : 0);
