/** The Datasets tab: rows and columns, a preview of the first rows, upload by drag and drop. */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { DatasetFormat, DatasetRow } from '@llmos/sdk';

import type { PanelContext } from './context';
import { View } from './view';
import { button, fill, errorText, h, table } from './dom';

const FORMATS: Record<string, DatasetFormat> = {
  jsonl: 'jsonl', ndjson: 'jsonl', json: 'json', csv: 'csv', tsv: 'tsv', txt: 'txt', text: 'txt', parquet: 'parquet',
};

/** The format a file name's extension implies, or null. */
export function formatOf(fileName: string): DatasetFormat | null {
  const ext = fileName.split('.').pop()?.toLowerCase() ?? '';
  return FORMATS[ext] ?? null;
}

/** A dataset name from a file name: its stem, lower-case, with only letters, digits, - and _. */
export function datasetName(fileName: string): string {
  return fileName.replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'data';
}

/** Datasets of the server's store. */
export class DatasetsView extends View {
  private rows: DatasetRow[] = [];
  private preview: HTMLElement | null = null;
  private status = '';

  constructor(ctx: PanelContext) {
    super(ctx, 'datasets', 'Datasets');
    this.render();
  }

  /** The datasets, for other views (the run form). */
  get datasets(): DatasetRow[] {
    return this.rows;
  }

  /** The list of datasets. */
  protected async load(): Promise<void> {
    this.rows = await this.ctx.client.datasets.list();
  }

  /** Upload files as datasets (named after each file, format from its extension). */
  async upload(files: File[]): Promise<void> {
    for (const file of files) {
      const format = formatOf(file.name);
      if (!format) {
        this.error = `${file.name}: unknown format; use a .jsonl, .json, .csv, .tsv, .txt or .parquet file`;
        continue;
      }
      const name = datasetName(file.name);
      this.status = `uploading ${file.name} as ${name}…`;
      this.render();
      try {
        const rec = await this.ctx.client.datasets.upload(name, file, { format, replace: true });
        this.status = `added ${rec.name}: ${rec.rows} rows`;
        this.error = '';
      } catch (e) {
        this.error = `${file.name}: ${errorText(e)}`;
        this.status = '';
      }
    }
    await this.refresh();
  }

  protected render(): void {
    const fileInput = h('input', { type: 'file', multiple: true, 'data-testid': 'llmos-upload-input', accept: '.jsonl,.ndjson,.json,.csv,.tsv,.txt,.parquet' });
    fileInput.addEventListener('change', () => void this.upload(Array.from(fileInput.files ?? [])));
    const drop = h('div', { class: 'llmos-dropzone', 'data-testid': 'llmos-dropzone' }, 'Drop .jsonl, .csv, .json, .tsv, .txt or .parquet files here, or ', fileInput);
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('llmos-dragover');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('llmos-dragover'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      e.stopPropagation();
      drop.classList.remove('llmos-dragover');
      void this.upload(Array.from(e.dataTransfer?.files ?? []));
    });
    fill(this.node, 
      h('div', { class: 'llmos-toolbar' }, button('Refresh', () => void this.refresh())),
      drop,
      this.status ? h('div', { class: 'llmos-muted', 'data-testid': 'llmos-upload-status' }, this.status) : null,
      this.error ? h('div', { class: 'llmos-error' }, this.error) : null,
      !this.loadingDone ? h('div', { class: 'llmos-muted' }, 'Loading…') :
        this.rows.length === 0 ? h('div', { class: 'llmos-muted' }, 'No datasets yet: drop a file above.') :
          table(['Name', 'Rows', 'Columns', ''], this.rows, (d) => [
            d.name,
            d.rows,
            (d.columns ?? []).join(', '),
            h('span', { class: 'llmos-actions' },
              button('Preview', () => void this.showPreview(d.name), { testid: `llmos-preview-${d.name}` }),
              button('Remove', () => void this.remove(d.name), { danger: true }),
            ),
          ], { testid: 'llmos-datasets-table', rowAttrs: (d) => ({ 'data-name': d.name }) }),
      this.preview,
    );
  }

  private async showPreview(name: string): Promise<void> {
    try {
      const rec = await this.ctx.client.datasets.show(name, { head: 10 });
      const head = rec.head ?? [];
      const cols = rec.columns ?? Object.keys(head[0] ?? {});
      this.preview = h('div', { class: 'llmos-detail', 'data-testid': 'llmos-dataset-preview' },
        h('strong', {}, `${name}: first ${head.length} of ${rec.rows} rows`),
        table(cols, head, (row) => cols.map((c) => String(row[c] ?? ''))),
      );
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  private async remove(name: string): Promise<void> {
    const answer = await showDialog({
      title: `Remove dataset ${name}?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })],
    });
    if (!answer.button.accept) return;
    try {
      await this.ctx.client.datasets.rm(name);
    } catch (e) {
      this.error = errorText(e);
    }
    this.preview = null;
    await this.refresh();
  }
}
