/** The Tasks tab: the tasks, a task's spec, and a form to run it over a dataset. */

import type { DatasetRow, ModelRow, TaskRow } from '@llmos/sdk';

import type { PanelContext } from './context';
import { View } from './view';
import { button, fill, errorText, h, table, yaml } from './dom';

const FIXED = '__fixed__';

/** The `%llmos run` magic for a run of `task` over `data` with `map` (input -> column). */
export function runMagic(task: string, data: string, map: Record<string, string>): string {
  const pairs = Object.entries(map).filter(([input, column]) => input !== column);
  return `%llmos run ${task} --data ${data}${pairs.map(([i, c]) => ` --map ${i}=${c}`).join('')}`;
}

/** Tasks of the server's store. */
export class TasksView extends View {
  private rows: TaskRow[] = [];
  private detail: HTMLElement | null = null;

  constructor(ctx: PanelContext) {
    super(ctx, 'tasks', 'Tasks');
    this.render();
  }

  /** The list of tasks. */
  protected async load(): Promise<void> {
    this.rows = await this.ctx.client.tasks.list();
  }

  protected render(): void {
    fill(this.node, 
      h('div', { class: 'llmos-toolbar' }, button('Refresh', () => void this.refresh())),
      this.error ? h('div', { class: 'llmos-error' }, this.error) : null,
      !this.loadingDone ? h('div', { class: 'llmos-muted' }, 'Loading…') :
        table(['Name', 'Inputs', 'Output', ''], this.rows, (t) => [
          h('span', { title: t.description ?? '' }, t.name),
          t.inputs.join(', '),
          t.output,
          h('span', { class: 'llmos-actions' },
            button('YAML', () => void this.showSpec(t.name)),
            button('Run…', () => void this.showRunForm(t), { testid: `llmos-run-${t.name}` }),
          ),
        ], { testid: 'llmos-tasks-table', rowAttrs: (t) => ({ 'data-name': t.name }) }),
      this.detail,
    );
  }

  private async showSpec(name: string): Promise<void> {
    try {
      const spec = await this.ctx.client.tasks.show(name);
      this.detail = h('div', { class: 'llmos-detail', 'data-testid': 'llmos-task-yaml' },
        h('pre', {}, yaml(spec).replace(/^\n/, '')));
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  private async showRunForm(task: TaskRow): Promise<void> {
    this.detail = h('div', { class: 'llmos-muted' }, 'Loading datasets and models…');
    this.render();
    let datasets: DatasetRow[];
    let models: ModelRow[];
    try {
      [datasets, models] = await Promise.all([this.ctx.client.datasets.list(), this.ctx.client.models.list()]);
    } catch (e) {
      this.error = errorText(e);
      this.render();
      return;
    }
    if (!datasets.length) {
      this.detail = h('div', { class: 'llmos-detail' }, 'Add a dataset first (Datasets tab) to run a task over it.');
      this.render();
      return;
    }
    const form = new RunForm(this.ctx, task, datasets, models);
    this.detail = form.node;
    this.render();
  }
}

/** The form that starts a run: dataset, one column (or fixed value) per task input, model, limit. */
class RunForm {
  readonly node: HTMLElement;
  private readonly dataSelect: HTMLSelectElement;
  private readonly inputsBox: HTMLElement = h('div');
  private readonly message: HTMLElement = h('div');
  private fields: { input: string; column: HTMLSelectElement; fixed: HTMLInputElement }[] = [];

  constructor(
    private readonly ctx: PanelContext,
    private readonly task: TaskRow,
    private readonly datasets: DatasetRow[],
    models: ModelRow[],
  ) {
    this.dataSelect = h('select', { 'data-testid': 'llmos-run-data' }, datasets.map((d) => h('option', { value: d.name }, `${d.name} (${d.rows} rows)`)));
    this.dataSelect.addEventListener('change', () => this.renderInputs());
    const model = h('select', { 'data-testid': 'llmos-run-model' }, models.map((m) => h('option', { value: m.name }, m.name)));
    model.value = models.some((m) => m.name === ctx.defaultModel()) ? ctx.defaultModel() : models[0]?.name ?? '';
    const limit = h('input', { type: 'number', min: 1, placeholder: 'all rows', 'data-testid': 'llmos-run-limit' });
    const maxTokens = h('input', { type: 'number', min: 1, placeholder: "the task's", 'data-testid': 'llmos-run-max-tokens' });
    this.node = h('div', { class: 'llmos-detail', 'data-testid': 'llmos-run-form' },
      h('strong', {}, `Run ${task.name} over a dataset`),
      h('div', { class: 'llmos-form' },
        h('label', {}, 'Dataset'), this.dataSelect,
        h('label', {}, 'Model'), model,
        h('label', {}, 'Limit'), limit,
        h('label', {}, 'Max tokens'), maxTokens,
      ),
      this.inputsBox,
      h('div', { class: 'llmos-toolbar' },
        button('Start run', () => void this.start(model.value, limit.value, maxTokens.value), { testid: 'llmos-run-start' }),
        button('Insert magic', () => this.ctx.insertMagic(runMagic(task.name, this.dataSelect.value, this.mapping())), { testid: 'llmos-run-insert' }),
      ),
      this.message,
    );
    this.renderInputs();
  }

  private renderInputs(): void {
    const ds = this.datasets.find((d) => d.name === this.dataSelect.value);
    const columns = ds?.columns ?? [];
    this.fields = this.task.inputs.map((input) => {
      const column = h('select', { 'data-testid': `llmos-map-${input}` },
        columns.map((c) => h('option', { value: c }, `column ${c}`)),
        h('option', { value: FIXED }, 'fixed value…'));
      // A column of the input's name, else the only column, else a fixed value.
      column.value = columns.includes(input) ? input : columns.length === 1 ? columns[0] : FIXED;
      const fixed = h('input', { placeholder: `${input} for every row`, 'data-testid': `llmos-fixed-${input}` });
      const sync = () => (fixed.style.display = column.value === FIXED ? '' : 'none');
      column.addEventListener('change', sync);
      sync();
      return { input, column, fixed };
    });
    this.inputsBox.replaceChildren(
      h('div', { class: 'llmos-form' }, this.fields.flatMap((f) => [h('label', {}, f.input), h('span', {}, f.column, f.fixed)])),
    );
  }

  private mapping(): Record<string, string> {
    const map: Record<string, string> = {};
    for (const f of this.fields) if (f.column.value !== FIXED) map[f.input] = f.column.value;
    return map;
  }

  private async start(model: string, limit: string, maxTokens: string): Promise<void> {
    const input: Record<string, string> = {};
    for (const f of this.fields) {
      if (f.column.value !== FIXED) continue;
      if (!f.fixed.value) {
        this.message.replaceChildren(h('div', { class: 'llmos-error' }, `give a value for ${f.input}, or pick a column`));
        return;
      }
      input[f.input] = f.fixed.value;
    }
    try {
      const run = await this.ctx.client.tasks.run(this.task.name, {
        data: this.dataSelect.value,
        map: this.mapping(),
        input: Object.keys(input).length ? input : undefined,
        model: model || undefined,
        limit: limit ? Number(limit) : undefined,
        params: maxTokens ? { max_tokens: Number(maxTokens) } : undefined,
      });
      this.message.replaceChildren(h('div', { class: 'llmos-muted' }, `started run ${run.id}`));
      this.ctx.showRun(run.id);
    } catch (e) {
      this.message.replaceChildren(h('div', { class: 'llmos-error' }, errorText(e)));
    }
  }
}
