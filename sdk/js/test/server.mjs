// A real `llmos serve` for the SDK's tests: a subprocess on a free loopback port over a
// temporary LLMOS_HOME seeded with the default model (never the user's store).
//
// The Python comes from LLMOS_PYTHON, else the repository's .venv/bin/python (what
// `make install` creates); the repository root is the working directory, so
// `python -m tests.seed_home` and `python -m llmos_jupyter...` resolve.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const PYTHON = process.env.LLMOS_PYTHON || join(REPO, '.venv/bin/python');
export const MODEL = 'smollm2-135m-instruct';
export const KEY = 'sdk-test-key-0123';

function checkPython() {
  if (!existsSync(PYTHON)) {
    throw new Error(
      `no Python at ${PYTHON}: run \`make install\` at the repository root, or set LLMOS_PYTHON to a Python with llmos-jupyter installed`,
    );
  }
}

/** A temporary store seeded with the default model; `cleanup()` removes it. */
export function seededHome() {
  checkPython();
  const dir = mkdtempSync(join(tmpdir(), 'llmos-sdk-test-'));
  const out = spawnSync(PYTHON, ['-m', 'tests.seed_home', join(dir, 'home')], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env },
  });
  if (out.status !== 0) {
    throw new Error(`seeding the default model failed:\n${out.stdout}\n${out.stderr}`);
  }
  const home = out.stdout.trim().split('\n').pop();
  return { dir, home, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Start `python -m llmos_jupyter.server.standalone --port 0 [--api-key KEY] ...args` on
 * `home`; resolves once it prints where it listens (rejects with its output if it exits).
 */
export function startServe(home, args = [], key = KEY) {
  checkPython();
  const env = { ...process.env, LLMOS_HOME: home };
  delete env.LLMOS_API_KEY;
  const cmd = ['-m', 'llmos_jupyter.server.standalone', '--port', '0', ...args];
  if (key) cmd.push('--api-key', key);
  const proc = spawn(PYTHON, cmd, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  proc.stderr.on('data', (chunk) => output.push(chunk.toString()));
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  return new Promise((res, rej) => {
    const lines = createInterface({ input: proc.stdout });
    let found = false;
    lines.on('line', (line) => {
      output.push(line + '\n');
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m && !found) {
        found = true;
        res({
          url: m[1],
          key,
          output,
          /** SIGKILL: the process dies at once, as in a crash. */
          async kill() {
            proc.kill('SIGKILL');
            await exited;
          },
          /** SIGTERM (a drain) and wait for the exit; returns everything it printed. */
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            const guard = setTimeout(() => proc.kill('SIGKILL'), 120_000);
            await exited;
            clearTimeout(guard);
            return output.join('');
          },
        });
      }
    });
    exited.then(({ code }) => {
      if (!found) rej(new Error(`llmos serve exited (${code}) before listening:\n${output.join('')}`));
    });
  });
}
