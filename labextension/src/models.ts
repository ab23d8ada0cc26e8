/** The Models tab: the catalog with loaded state, pull with progress, load/unload, details, remove. */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { LoadedModel, ModelRow } from '@llmos/sdk';

import type { PanelContext } from './context';
import { View } from './view';
import { button, fill, bytes, errorText, h, progress, table } from './dom';

/** Models of the server's store. */
export class ModelsView extends View {
  private rows: ModelRow[] = [];
  private loaded = new Set<string>();
  private detail: HTMLElement | null = null;
  private pullState: HTMLElement = h('div');

  constructor(ctx: PanelContext) {
    super(ctx, 'models', 'Models');
    this.render();
  }

  /** The list and the loaded models. */
  protected async load(): Promise<void> {
    const [rows, ps] = await Promise.all([this.ctx.client.models.list(), this.ctx.client.models.ps()]);
    this.rows = rows;
    this.loaded = new Set(ps.map((m: LoadedModel) => m.name));
  }

  protected render(): void {
    const nameInput = h('input', { placeholder: 'model to pull, e.g. smollm2-135m-instruct', 'data-testid': 'llmos-pull-name', size: 28 });
    fill(this.node, 
      h('div', { class: 'llmos-toolbar' },
        nameInput,
        button('Pull', () => void this.pull(nameInput.value.trim()), { testid: 'llmos-pull' }),
        button('Refresh', () => void this.refresh()),
      ),
      this.pullState,
      this.error ? h('div', { class: 'llmos-error' }, this.error) : null,
      !this.loadingDone ? h('div', { class: 'llmos-muted' }, 'Loading…') :
        this.rows.length === 0 ? h('div', { class: 'llmos-muted' }, 'No models yet: pull one above.') :
          table(['Name', 'Size', 'Format', 'Quant', 'Loaded', ''], this.rows, (m) => [
            m.name,
            m.size ?? bytes(m.size_bytes),
            m.format ?? (m.kind === 'preset' ? `preset of ${m.base}` : ''),
            m.quantization ?? '',
            this.loaded.has(m.name) ? 'yes' : '',
            h('span', { class: 'llmos-actions' },
              this.loaded.has(m.name)
                ? button('Unload', () => void this.act(() => this.ctx.client.models.unload(m.name)))
                : button('Load', () => void this.act(() => this.ctx.client.models.load(m.name)), { testid: `llmos-load-${m.name}` }),
              button('Details', () => void this.details(m.name)),
              button('Chat', () => this.ctx.openChat(m.name)),
              button('Insert', () => this.ctx.insertMagic(`%llmos load ${m.name}`), { title: `insert %llmos load ${m.name} in the notebook` }),
              button('Remove', () => void this.remove(m.name), { danger: true }),
            ),
          ], { testid: 'llmos-models-table', rowAttrs: (m) => ({ 'data-name': m.name }) }),
      this.detail,
    );
  }

  private async details(name: string): Promise<void> {
    try {
      const rec = await this.ctx.client.models.show(name);
      const { chat_template: _template, tokenizer, ...rest } = rec;
      const fields = Object.entries(rest).filter(([, v]) => v !== null && v !== '' && typeof v !== 'object');
      this.detail = h('div', { class: 'llmos-detail', 'data-testid': 'llmos-model-detail' },
        h('strong', {}, name),
        table(['Field', 'Value'], fields, ([k, v]) => [k, String(v)]),
        tokenizer ? h('pre', {}, `tokenizer: ${JSON.stringify(tokenizer)}`) : null,
      );
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  private async remove(name: string): Promise<void> {
    const answer = await showDialog({
      title: `Remove ${name}?`,
      body: 'Its files are deleted from the LLMOS store (presets built on it are removed too).',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })],
    });
    if (answer.button.accept) await this.act(() => this.ctx.client.models.rm(name, { cascade: true }));
  }

  private async pull(name: string): Promise<void> {
    if (!name) {
      this.error = 'type the name of a model to pull (e.g. smollm2-135m-instruct)';
      this.render();
      return;
    }
    const label = h('span', {}, `pulling ${name}…`);
    this.pullState.replaceChildren(h('div', { 'data-testid': 'llmos-pull-progress' }, label, progress(0, null)));
    try {
      for await (const ev of this.ctx.client.models.pull(name)) {
        const done = ev.completed ?? 0;
        label.textContent = ev.total ? `${name}: ${ev.status} ${bytes(done)} / ${bytes(ev.total)}` : `${name}: ${ev.status}`;
        this.pullState.firstElementChild?.replaceChildren(label, progress(ev.status === 'success' ? 1 : done, ev.status === 'success' ? 1 : ev.total));
      }
      this.error = '';
    } catch (e) {
      this.error = errorText(e);
      this.pullState.replaceChildren();
    }
    await this.refresh();
  }
}
