// The output contract of the CLI (src/cli/io.ts): nothing written to --out until a run is
// complete, an existing non-empty --out refused or (with --force) replaced whole, a lock
// against a second run, output paths checked against the inputs before any work, inputs never
// written. Each case is one a user hit (issue 14): these run the real CLI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

const data = join(process.cwd(), '..', 'shared', 'data');
const cli = join(process.cwd(), 'build', 'cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A quick quantize of the example model (a few seconds). */
const quick = (model: string, out: string, extra: string[] = []) => ['quantize', model, '--calib', join(data, 'tinystories-valid-a.txt'),
  '--calib-paragraphs', '0:100', '--nsamples', '4', '--seqlen', '32', '--method', 'rtn', '--bits', '4', '--tokenizer', join(data, 'tok512.bin'),
  '--out', out, ...extra];

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cdquant-out-'));
}

test('an existing non-empty --out is refused before any work; --force replaces it whole', () => {
  const dir = tmp();
  try {
    const out = join(dir, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'old-shard.safetensors'), 'stale');
    const refused = run(quick(join(data, 'stories260K.bin'), out));
    assert.is(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /BAD_OPTION.*already holds files/);
    assert.ok(!/block \d/.test(refused.stderr), 'refused before quantizing anything');
    assert.is(readFileSync(join(out, 'old-shard.safetensors'), 'utf8'), 'stale');
    const forced = run(quick(join(data, 'stories260K.bin'), out, ['--force']));
    assert.is(forced.status, 0, forced.stderr);
    // Replaced whole: no stale file mixed with the new outputs.
    assert.ok(!existsSync(join(out, 'old-shard.safetensors')), 'the old folder is gone');
    assert.equal(readdirSync(out).sort(), ['dequantized', 'gptq', 'report.json']);
    assert.ok(!existsSync(`${out}.partial`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--out that is or contains an input, or lies inside an input folder, is refused; inputs untouched', () => {
  const dir = tmp();
  try {
    // A copy of the HF example, so a bug could not touch the shared data.
    const model = join(dir, 'model');
    mkdirSync(model);
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(data, 'stories260K-hf', f), join(model, f));
    const before = sha(join(model, 'model.safetensors'));
    for (const out of [model, join(model, 'q'), dir]) {
      const r = run(quick(model, out, ['--force']));
      assert.is(r.status, 2, `${out}: ${r.stderr}`);
      assert.match(r.stderr, /never overwritten/);
    }
    // The quantized model of a previous run as the input, and its folder as --out.
    const first = join(dir, 'first');
    assert.is(run(quick(model, first)).status, 0);
    const again = run(quick(join(first, 'dequantized'), first, ['--force']));
    assert.is(again.status, 2);
    assert.match(again.stderr, /never overwritten/);
    assert.ok(existsSync(join(first, 'dequantized', 'model.safetensors')), 'the input survived');
    assert.is(sha(join(model, 'model.safetensors')), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('devices, files and missing parents as --out are refused at once', () => {
  const dir = tmp();
  try {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    for (const [out, why] of [['/dev/null', /not a folder/], [file, /not a folder/], [join(file, 'sub'), /parent .* is not an existing folder/],
      [join(dir, 'no', 'such', 'parent'), /parent .* is not an existing folder/], ['/proc/self/x', /cannot create|not an existing folder|EACCES|ENOENT|EROFS|EPERM/]] as const) {
      const t0 = Date.now();
      const r = run(quick(join(data, 'stories260K.bin'), out));
      assert.is(r.status, 2, `${out}: ${r.stderr}`);
      assert.match(r.stderr, why, out);
      assert.ok(Date.now() - t0 < 20_000, `${out}: answered promptly`);
    }
    // cdquant layer: --out naming a folder or a device.
    const layer = spawnSync(process.execPath, [cli, 'layer', join(data, 'stories260K-hf', 'model.safetensors'), '--out', dir], { encoding: 'utf8' });
    assert.is(layer.status, 2);
    assert.match(layer.stderr, /BAD_OPTION.*not a regular file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a second run on the same --out is refused while the first one lives; a dead run\'s lock is taken over', async () => {
  const dir = tmp();
  try {
    const out = join(dir, 'out');
    // A slow first run: CD with many samples, killed once the lock is seen.
    const first = spawn(process.execPath, [cli, ...quick(join(data, 'stories260K.bin'), out, ['--method', 'cd', '--nsamples', '64', '--seqlen', '256', '--calib-paragraphs', '0:1600'])], { stdio: 'ignore' });
    const lock = join(`${out}.partial`, 'lock');
    for (let i = 0; i < 200 && !existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(lock), 'the first run holds the lock');
    const second = run(quick(join(data, 'stories260K.bin'), out));
    assert.is(second.status, 2, second.stderr);
    assert.match(second.stderr, /another cdquant run \(pid \d+\) is writing/);
    first.kill('SIGKILL');
    await new Promise((r) => first.on('exit', r));
    assert.ok(!existsSync(out), 'the killed run wrote nothing to --out');
    assert.ok(existsSync(lock), 'its lock stayed behind');
    // The lock of a process that is gone does not block; the different job in .partial needs --force.
    const third = run(quick(join(data, 'stories260K.bin'), out));
    assert.is(third.status, 2);
    assert.match(third.stderr, /interrupted run of a different job/);
    const forced = run(quick(join(data, 'stories260K.bin'), out, ['--force']));
    assert.is(forced.status, 0, forced.stderr);
    assert.ok(statSync(join(out, 'report.json')).isFile());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flags: numbers must be decimal and whole where counts are expected', () => {
  const dir = tmp();
  try {
    for (const [flag, value] of [['--bits', '0x4'], ['--seed', '1.5'], ['--nsamples', '-3'], ['--seqlen', '1e400'], ['--max-memory', 'lots']]) {
      const r = run(quick(join(data, 'stories260K.bin'), join(dir, 'o'), [flag, value]));
      assert.is(r.status, 2, `${flag} ${value}`);
      assert.match(r.stderr, /BAD_OPTION/);
    }
    // An empty evaluation text says so.
    writeFileSync(join(dir, 'empty.txt'), '');
    const empty = run(['eval', join(data, 'stories260K.bin'), '--text', join(dir, 'empty.txt'), '--tokenizer', join(data, 'tok512.bin')]);
    assert.is(empty.status, 2);
    assert.match(empty.stderr, /selects no paragraphs|empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
