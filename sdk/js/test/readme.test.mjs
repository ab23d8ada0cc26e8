// The README's example runs as written: its first ```js block, saved as a module inside
// this package (so `import '@llmos/sdk'` resolves to it), against a real `llmos serve`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { KEY, seededHome, startServe } from './server.mjs';

const PKG = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT = join(PKG, 'test', '.readme-example.mjs');
let store;
let server;

before(async () => {
  store = seededHome();
  server = await startServe(store.home);
});

after(async () => {
  rmSync(SCRIPT, { force: true });
  if (server) await server.stop();
  store?.cleanup();
});

it("the README's example prints models, a streamed answer, run progress and results", async () => {
  const readme = readFileSync(join(PKG, 'README.md'), 'utf8');
  const block = /```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README.md has a ```js example');
  writeFileSync(SCRIPT, block[1]);
  const { stdout } = await promisify(execFile)(process.execPath, [SCRIPT], {
    env: { ...process.env, LLMOS_URL: server.url, LLMOS_API_KEY: KEY },
    timeout: 300_000,
  });
  const lines = stdout.trim().split('\n');
  assert.match(lines[0], /^smollm2-135m-instruct \d/);
  assert.ok(lines.some((l) => l === 'succeeded 2/2'), stdout);
  assert.match(lines.at(-1), /^404 model_not_found .*no-such-model/);
});
