/** The Runs tab: live list (progress, status, tokens/s), cancel/resume, results as a table. */

import { isTerminal, type RunItem, type RunRecord } from '@llmos/sdk';
import { Message } from '@lumino/messaging';

import type { PanelContext } from './context';
import { View } from './view';
import { button, fill, errorText, h, progress, table } from './dom';

/** How many runs the list shows. */
export const RUN_LIMIT = 50;

/** Completion tokens per second of a run (to now while it runs), or null before it starts. */
export function tokensPerSecond(run: RunRecord, now = Date.now()): number | null {
  if (!run.started_at || !run.completion_tokens) return null;
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  const seconds = (end - Date.parse(run.started_at)) / 1000;
  return seconds > 0 ? run.completion_tokens / seconds : null;
}

/** A run's done and total, from its progress (native routes) or its own fields. */
function counts(run: RunRecord): [number, number | null] {
  return [run.progress?.done ?? run.done ?? 0, run.progress?.total ?? run.total ?? null];
}

/** Runs of the server's store, refreshed by polling while the tab is visible. */
export class RunsView extends View {
  private rows: RunRecord[] = [];
  private results: HTMLElement | null = null;
  private selected: string | null = null;
  private timer: number | undefined;

  constructor(ctx: PanelContext) {
    super(ctx, 'runs', 'Runs');
    this.render();
  }

  /** Highlight `runId` (a run just started). */
  follow(runId: string): void {
    this.selected = runId;
    this.results = null;
    void this.refresh();
  }

  /** Reload the list from the server; schedules the next poll while visible. */
  /** The recent runs. */
  protected async load(): Promise<void> {
    this.rows = await this.ctx.client.runs.list({ limit: RUN_LIMIT });
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    await super.refresh();
    if (this.isVisible && !this.isDisposed) {
      this.timer = window.setTimeout(() => void this.refresh(), this.ctx.refreshSeconds() * 1000);
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  protected onBeforeHide(msg: Message): void {
    window.clearTimeout(this.timer);
    super.onBeforeHide(msg);
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  protected render(): void {
    const scroll = this.node.scrollTop;
    fill(this.node, 
      h('div', { class: 'llmos-toolbar' }, button('Refresh', () => void this.refresh())),
      this.error ? h('div', { class: 'llmos-error' }, this.error) : null,
      !this.loadingDone ? h('div', { class: 'llmos-muted' }, 'Loading…') :
        this.rows.length === 0 ? h('div', { class: 'llmos-muted' }, 'No runs yet: start one from the Tasks tab.') :
          table(['Run', 'Task', 'Data', 'Status', 'Progress', 'tok/s', ''], this.rows, (r) => {
            const [done, total] = counts(r);
            const tps = tokensPerSecond(r);
            return [
              h('code', {}, r.id),
              r.task ?? r.kind ?? '',
              r.dataset ?? '',
              h('span', { class: `llmos-status-${r.status}`, 'data-testid': 'llmos-run-status' }, r.status),
              h('span', {}, progress(done, total), h('span', { class: 'llmos-muted' }, `${done}/${total ?? '?'}`)),
              tps === null ? '' : tps.toFixed(1),
              h('span', { class: 'llmos-actions' },
                !isTerminal(r.status) ? button('Cancel', () => void this.act(() => this.ctx.client.runs.cancel(r.id)), { testid: 'llmos-run-cancel' }) : null,
                r.status === 'interrupted' ? button('Resume', () => void this.act(() => this.ctx.client.runs.resume(r.id)), { testid: 'llmos-run-resume' }) : null,
                button('Results', () => void this.showResults(r.id), { testid: 'llmos-run-results' }),
              ),
            ];
          }, {
            testid: 'llmos-runs-table',
            rowAttrs: (r) => ({ 'data-run': r.id, 'data-status': r.status, class: r.id === this.selected ? 'llmos-selected' : undefined }),
          }),
      this.results,
    );
    this.node.scrollTop = scroll;
  }

  private async showResults(id: string): Promise<void> {
    this.selected = id;
    try {
      const items: RunItem[] = await this.ctx.client.runs.items(id, { limit: 100 });
      const cols = ['idx', 'status', 'output', 'error'].filter((c) => items.some((i) => i[c] !== undefined && i[c] !== null));
      this.results = h('div', { class: 'llmos-detail', 'data-testid': 'llmos-run-results-table' },
        h('strong', {}, `Results of ${id} (${items.length})`),
        table(cols, items, (item) => cols.map((c) => {
          const v = item[c];
          return typeof v === 'string' ? v : JSON.stringify(v);
        })),
      );
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }
}
