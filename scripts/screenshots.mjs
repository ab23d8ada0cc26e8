// Drive headless Debian chromium through a running JupyterLab (see screenshots.py):
// open the demo notebook, run every cell, wait for the playground's generation, and
// save element screenshots of the widgets.
//   node scripts/screenshots.mjs URL OUT_DIR
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const [url, outDir] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 2400 } });
  page.setDefaultTimeout(120_000);
  await page.goto(url);
  await page.waitForSelector('.jp-Notebook .jp-Cell');
  // JupyterLab may ask which kernel to start: take the one the notebook names.
  const select = page.locator('.jp-Dialog button', { hasText: 'Select' });
  try {
    await select.waitFor({ timeout: 10_000 });
    await select.click();
  } catch {
    // no dialog: the kernel started by itself
  }
  await page.waitForSelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                             { timeout: 180_000 });
  // Run > Run All Cells, as a user would.
  await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-item', { hasText: 'Run All Cells' }).first().click();
  // The last cell prints GENERATED: once the playground's thread has finished.
  await page.waitForSelector('.jp-OutputArea-output:has-text("GENERATED:")',
                             { timeout: 300_000 });
  await page.waitForTimeout(1500); // let the last widget updates paint

  const dash = page.locator('.llmos-dashboard').first();
  await dash.screenshot({ path: `${outDir}/dashboard.png` });
  for (const [title, file] of [['Data', 'dashboard-data'], ['Tasks', 'dashboard-tasks'],
                               ['Runs', 'dashboard-runs']]) {
    await dash.locator(`.lm-TabBar-tab:has-text("${title}")`).click();
    await page.waitForTimeout(1000);
    await dash.screenshot({ path: `${outDir}/${file}.png` });
  }
  await dash.locator('.lm-TabBar-tab:has-text("Models")').click();
  await page.locator('.llmos-playground').first().screenshot({ path: `${outDir}/playground.png` });
  console.log(`saved screenshots in ${outDir}`);
} catch (e) {
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages.length) await pages[0].screenshot({ path: `${tmpdir()}/llmos-screenshots-error.png` });
  console.error(`failed; the page as it was: ${tmpdir()}/llmos-screenshots-error.png`);
  throw e;
} finally {
  await browser.close();
}
