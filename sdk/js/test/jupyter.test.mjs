// The SDK inside Jupyter: `jupyterOptions` reaches the LLMOS routes of a real Jupyter
// server (its server extension, under `{base_url}llmos/`) with Jupyter's token.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';

import { AuthError, LLMOS, jupyterOptions } from '../dist/index.js';
import { MODEL, PYTHON, REPO, seededHome } from './server.mjs';

const TOKEN = 'sdk-jupyter-token';
let store;
let jupyter;
let baseUrl;

before(async () => {
  store = seededHome();
  const root = join(store.dir, 'root');
  mkdirSync(root);
  const args = [
    '-m', 'jupyter_server', '--no-browser', '--port=0', '--ip=127.0.0.1',
    `--IdentityProvider.token=${TOKEN}`, '--ServerApp.base_url=/jp/', `--ServerApp.root_dir=${root}`,
  ];
  if (process.getuid?.() === 0) args.push('--allow-root');
  jupyter = spawn(PYTHON, args, { cwd: REPO, env: { ...process.env, LLMOS_HOME: store.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  baseUrl = await new Promise((res, rej) => {
    let log = '';
    const look = (chunk) => {
      log += chunk;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/jp\/)/.exec(log);
      if (m) res(m[1]);
    };
    jupyter.stdout.on('data', look);
    jupyter.stderr.on('data', look);
    jupyter.once('exit', (code) => rej(new Error(`jupyter server exited (${code}):\n${log}`)));
  });
});

after(async () => {
  if (jupyter && jupyter.exitCode === null) {
    const exited = new Promise((res) => jupyter.once('exit', res));
    jupyter.kill('SIGTERM');
    await exited;
  }
  store?.cleanup();
});

it('jupyterOptions points at {base_url}llmos/ with the token', () => {
  const opts = jupyterOptions({ baseUrl: 'http://h:1/jp', token: 'T' });
  assert.equal(opts.baseUrl, 'http://h:1/jp/llmos/');
  assert.equal(opts.headers.Authorization, 'token T');
});

it('streams a chat and invokes a task through the Jupyter server', async () => {
  const llmos = new LLMOS(jupyterOptions({ baseUrl, token: TOKEN }));
  assert.equal(llmos.baseUrl, `${baseUrl}llmos/`);
  const pieces = [];
  for await (const p of llmos.chat(MODEL, [{ role: 'user', content: 'Hi!' }], { max_tokens: 6, temperature: 0, stream: true })) {
    pieces.push(p);
  }
  assert.ok(pieces.length > 1);
  const out = await llmos.tasks.invoke('generate', { prompt: 'Say yes.' }, { params: { max_tokens: 4 } });
  assert.equal(out.status, 'succeeded');
});

it('a wrong token is an AuthError (403)', async () => {
  const llmos = new LLMOS(jupyterOptions({ baseUrl, token: 'wrong' }));
  await assert.rejects(llmos.chat(MODEL, [{ role: 'user', content: 'x' }]), (e) => {
    assert.ok(e instanceof AuthError);
    assert.equal(e.status, 403);
    return true;
  });
});
