// The LLMOS sidebar in a real JupyterLab, driven by headless Chromium: the default model,
// a task run over a dataset to its results, a cancelled run, a streamed chat with Stop,
// inserting a magic into a notebook, and the panel's first paint over a store of 200
// runs and 50 datasets (printed, not asserted). Screenshots go to docs/images/.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { after, afterEach, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { IMAGES, startLab } from './lab.mjs';

const MODEL = 'smollm2-135m-instruct';
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
let lab;
let page;

const panel = () => page.locator('#llmos-panel');
const tab = (name) => page.locator('#llmos-panel .lm-TabBar-tab', { hasText: name });
const shot = (name, locator) => (locator ?? panel()).screenshot({ path: join(IMAGES, name) });

before(async () => {
  lab = await startLab({ runs: 200, datasets: 50 });
  page = lab.page;
});

afterEach(async (t) => {
  // A failed test leaves a picture of the page for the one who reads the failure.
  if (page && t.passed === false) {
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, `${t.name.replace(/[^a-z0-9]+/gi, '-')}.png`) });
  }
});

after(async () => {
  await lab?.stop();
});

it('first paint of the panel over 200 runs and 50 datasets (printed)', async () => {
  await lab.open();
  // From the click on each tab until its rows are in the page (an upper bound: it
  // includes the browser round trips of the driver).
  const now = () => page.evaluate(() => performance.now());
  const timed = async (click, rows) => {
    const t0 = await now();
    await click.click();
    await page.locator(rows).first().waitFor();
    return (await now()) - t0;
  };
  const paint = {
    models: await timed(page.locator('.lm-TabBar-tab[data-id="llmos-panel"]'), '[data-testid="llmos-models-table"] tr[data-name]'),
    runs: await timed(tab('Runs'), '[data-testid="llmos-runs-table"] tr[data-run]'),
    datasets: await timed(tab('Datasets'), '[data-testid="llmos-datasets-table"] tr[data-name]'),
  };
  // Widen the sidebar for readable screenshots: drag the handle between it and the main area.
  const handle = await page.locator('#jp-main-split-panel > .lm-SplitPanel-handle').first().boundingBox();
  await page.mouse.move(handle.x + handle.width / 2, handle.y + handle.height / 2);
  await page.mouse.down();
  await page.mouse.move(640, handle.y + handle.height / 2, { steps: 5 });
  await page.mouse.up();
  console.log(`first paint after JupyterLab is ready: models ${paint.models.toFixed(0)} ms, runs (200 in the store, 50 shown) ${paint.runs.toFixed(0)} ms, datasets (52) ${paint.datasets.toFixed(0)} ms`);
  assert.equal(await page.locator('[data-testid="llmos-runs-table"] tr[data-run]').count(), 50);
  assert.equal(await page.locator('[data-testid="llmos-datasets-table"] tr[data-name]').count(), 52);
  await tab('Models').click();
});

it('the Models tab shows the default model with size, format and quantization', async () => {
  const row = page.locator(`[data-testid="llmos-models-table"] tr[data-name="${MODEL}"]`);
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /gguf/);
  assert.match(text, /Q4_1/);
  assert.match(text, /MB/);
  await row.getByText('Details').click();
  await page.locator('[data-testid="llmos-model-detail"]').getByText('context_length').waitFor();
  await shot('labext-models.png');
});

it('pull shows its progress to success; load and unload change the Loaded column', async () => {
  await page.locator('[data-testid="llmos-pull-name"]').fill(MODEL);
  await page.locator('[data-testid="llmos-pull"]').click();
  await page.locator('[data-testid="llmos-pull-progress"]', { hasText: `${MODEL}: success` }).waitFor();
  const row = page.locator(`[data-testid="llmos-models-table"] tr[data-name="${MODEL}"]`);
  await row.getByText('Load', { exact: true }).click();
  await row.getByText('Unload', { exact: true }).waitFor();
  assert.match(await row.innerText(), /yes/);
  await row.getByText('Unload', { exact: true }).click();
  await row.getByText('Load', { exact: true }).waitFor();
});

it('a dataset dropped on the panel uploads and previews; remove asks first', async () => {
  await tab('Datasets').click();
  // A file dropped as the browser delivers it: a drop event whose DataTransfer holds it.
  await page.locator('[data-testid="llmos-dropzone"]').evaluate((zone) => {
    const data = new DataTransfer();
    data.items.add(new File(['name,colour\napple,red\nbanana,yellow\n'], 'fruit.csv', { type: 'text/csv' }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await page.locator('[data-testid="llmos-upload-status"]', { hasText: 'added fruit: 2 rows' }).waitFor();
  await page.locator('[data-testid="llmos-upload-input"]').setInputFiles({
    name: 'scratch notes.txt', mimeType: 'text/plain', buffer: Buffer.from('one\ntwo\nthree\n'),
  });
  await page.locator('[data-testid="llmos-upload-status"]', { hasText: 'added scratch-notes: 3 rows' }).waitFor();
  const scratch = page.locator('[data-testid="llmos-datasets-table"] tr[data-name="scratch-notes"]');
  await scratch.getByText('Remove').click();
  await page.locator('.jp-Dialog-button.jp-mod-warn').click();
  await scratch.waitFor({ state: 'detached' });
  await page.locator('[data-testid="llmos-preview-fruit"]').click();
  const preview = page.locator('[data-testid="llmos-dataset-preview"]');
  await preview.getByText('banana').waitFor();
  await shot('labext-datasets.png');
});

it('a task runs over a dataset from the form; its progress reaches done; results open', async () => {
  await tab('Tasks').click();
  await page.locator('[data-testid="llmos-tasks-table"] tr[data-name="summarize"]').getByText('YAML').click();
  await page.locator('[data-testid="llmos-task-yaml"]', { hasText: 'prompt:' }).waitFor();
  await page.locator('[data-testid="llmos-run-summarize"]').click();
  const form = page.locator('[data-testid="llmos-run-form"]');
  await form.locator('[data-testid="llmos-run-data"]').selectOption('reviews');
  assert.equal(await form.locator('[data-testid="llmos-map-text"]').inputValue(), 'text');
  await form.locator('[data-testid="llmos-run-max-tokens"]').fill('12');
  await shot('labext-tasks.png');
  await form.locator('[data-testid="llmos-run-start"]').click();
  const row = page.locator('[data-testid="llmos-runs-table"] tr.llmos-selected');
  await row.waitFor();
  await page.locator('[data-testid="llmos-runs-table"] tr.llmos-selected[data-status="succeeded"]').waitFor({ timeout: 300_000 });
  assert.match(await row.innerText(), /4\/4/);
  await row.locator('[data-testid="llmos-run-results"]').click();
  const results = page.locator('[data-testid="llmos-run-results-table"]');
  await results.locator('tbody tr').nth(3).waitFor();
  assert.equal(await results.locator('tbody tr').count(), 4);
  await shot('labext-results.png', results);
  await panel().locator('[data-testid="llmos-runs"]').evaluate((el) => (el.scrollTop = 0));
  await shot('labext-runs.png');
});

it('a second run is cancelled from the Runs tab', async () => {
  await tab('Tasks').click();
  await page.locator('[data-testid="llmos-run-summarize"]').click();
  const form = page.locator('[data-testid="llmos-run-form"]');
  await form.locator('[data-testid="llmos-run-data"]').selectOption('reviews-long');
  await form.locator('[data-testid="llmos-run-max-tokens"]').fill('48');
  await form.locator('[data-testid="llmos-run-start"]').click();
  const row = page.locator('[data-testid="llmos-runs-table"] tr.llmos-selected');
  await row.locator('[data-testid="llmos-run-cancel"]').click();
  await page.locator('[data-testid="llmos-runs-table"] tr.llmos-selected[data-status="cancelled"]').waitFor({ timeout: 300_000 });
  assert.match(await row.innerText(), /\/40/);
});

it('the palette opens the chat; it streams an answer, and Stop stops the next one', async () => {
  if (!(await page.locator('.lm-TabBar-tab[data-id="llmos-panel"]').isVisible())) await lab.open();
  await page.keyboard.press('Control+Shift+C');
  await page.locator('.lm-CommandPalette-input').fill('LLMOS: Chat');
  await page.locator('.lm-CommandPalette-item', { hasText: 'LLMOS: Chat with the Default Model' }).click();
  const input = page.locator('[data-testid="llmos-chat-input"]');
  await input.fill('Name three colors.');
  await page.locator('[data-testid="llmos-chat-send"]').click();
  const first = page.locator('[data-testid="llmos-chat-answer"]').nth(0);
  await page.locator('[data-testid="llmos-chat-answer"][data-done="true"]').nth(0).waitFor({ timeout: 300_000 });
  assert.ok((await first.innerText()).trim().length > 0);
  assert.match(await page.locator('[data-testid="llmos-chat-status"]').innerText(), /^done/);
  await shot('labext-chat.png', page.locator('#llmos-chat-area'));

  await input.fill('Write a long story about the sea, with many chapters.');
  await page.locator('[data-testid="llmos-chat-send"]').click();
  const second = page.locator('[data-testid="llmos-chat-answer"]').nth(1);
  await page.waitForFunction(() => (document.querySelectorAll('[data-testid="llmos-chat-answer"]')[1]?.textContent ?? '').length > 0);
  await page.locator('[data-testid="llmos-chat-stop"]').click();
  await page.locator('[data-testid="llmos-chat-answer"][data-stopped="true"]').waitFor();
  assert.equal(await page.locator('[data-testid="llmos-chat-status"]').innerText(), 'stopped');
  assert.ok((await second.innerText()).length > 0);
  assert.equal(await page.locator('[data-testid="llmos-chat-send"]').isEnabled(), true);
});

it('Insert puts the %llmos load and %llmos run magics in the open notebook', async () => {
  await lab.open('lab/tree/scratch.ipynb');
  await page.locator('.jp-Notebook .jp-Cell').first().waitFor();
  if (!(await panel().isVisible())) await page.locator('.lm-TabBar-tab[data-id="llmos-panel"]').click();
  await tab('Models').click();
  await page.locator(`[data-testid="llmos-models-table"] tr[data-name="${MODEL}"]`).getByText('Insert').click();
  await page.locator('.jp-Notebook .jp-Cell', { hasText: `%llmos load ${MODEL}` }).waitFor();
  await tab('Tasks').click();
  await page.locator('[data-testid="llmos-run-summarize"]').click();
  const form = page.locator('[data-testid="llmos-run-form"]');
  await form.locator('[data-testid="llmos-run-data"]').selectOption('reviews');
  await form.locator('[data-testid="llmos-run-insert"]').click();
  await page.locator('.jp-Notebook .jp-Cell', { hasText: '%llmos run summarize --data reviews' }).waitFor();
});
