// A real JupyterLab for the UI tests: a temporary store seeded with the default model and
// filled by populate.py, this checkout's built extension (labextension/build) on the
// labextensions path, and headless Chromium (Debian's, at $CHROMIUM) driven by
// playwright-core.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { PYTHON, REPO, seededHome } from '../../sdk/js/test/server.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BUILD = resolve(HERE, '../build');
export const IMAGES = join(REPO, 'docs/images');
export const TOKEN = 'llmos-ui-test-token';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Quiet JupyterLab: no news or update toasts over the panel.
const LAB_SETTINGS = {
  '@jupyterlab/apputils-extension/notification.jupyterlab-settings': { fetchNews: 'false', checkForUpdates: false },
};

/** Start JupyterLab over a fresh store holding `runs` recorded runs and `datasets` datasets. */
export async function startLab({ runs = 0, datasets = 0 } = {}) {
  const store = seededHome();
  const env = { ...process.env, LLMOS_HOME: store.home };
  const filled = spawnSync(PYTHON, [join(HERE, 'populate.py'), String(runs), String(datasets)], { cwd: REPO, env, encoding: 'utf8' });
  if (filled.status !== 0) throw new Error(`populate.py failed:\n${filled.stdout}\n${filled.stderr}`);
  const root = join(store.dir, 'notebooks');
  const settings = join(store.dir, 'lab-settings');
  mkdirSync(root);
  writeFileSync(join(root, 'scratch.ipynb'), JSON.stringify({
    cells: [], metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } }, nbformat: 4, nbformat_minor: 5,
  }));
  for (const [rel, value] of Object.entries(LAB_SETTINGS)) {
    mkdirSync(dirname(join(settings, rel)), { recursive: true });
    writeFileSync(join(settings, rel), JSON.stringify(value));
  }
  const args = [
    '-m', 'jupyterlab', '--no-browser', '--port=0', '--ip=127.0.0.1',
    `--IdentityProvider.token=${TOKEN}`, `--ServerApp.root_dir=${root}`,
    `--LabApp.extra_labextensions_path=${BUILD}`, `--LabApp.workspaces_dir=${join(store.dir, 'workspaces')}`,
  ];
  if (process.getuid?.() === 0) args.push('--allow-root');
  const proc = spawn(PYTHON, args, { cwd: REPO, env: { ...env, JUPYTERLAB_SETTINGS_DIR: settings }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const url = await new Promise((res, rej) => {
    const look = (chunk) => {
      log += chunk;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)lab/.exec(log);
      if (m) res(m[1]);
    };
    proc.stdout.on('data', look);
    proc.stderr.on('data', look);
    proc.once('exit', (code) => rej(new Error(`jupyter lab exited (${code}):\n${log}`)));
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(Number(process.env.UI_TIMEOUT_MS ?? 120_000));
  return {
    url,
    page,
    store,
    log: () => log,
    /** Open JupyterLab at `path` and wait until the LLMOS sidebar tab is there. */
    async open(path = 'lab') {
      await page.goto(`${url}${path}?token=${TOKEN}`);
      await page.locator('.lm-TabBar-tab[data-id="llmos-panel"]').waitFor();
    },
    async stop() {
      await browser.close();
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        // A hang guard only: a server that has not exited 20 s after SIGTERM is killed, and
        // says so (a thread that keeps the process alive is a bug worth seeing).
        const guard = setTimeout(() => {
          console.warn('jupyter lab did not exit 20 s after SIGTERM; killing it');
          proc.kill('SIGKILL');
        }, 20_000);
        await exited;
        clearTimeout(guard);
      }
      store.cleanup();
    },
  };
}
