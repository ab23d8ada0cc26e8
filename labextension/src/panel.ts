/** The LLMOS sidebar panel: Models, Datasets, Tasks and Runs tabs. */

import { TabPanel } from '@lumino/widgets';

import type { PanelContext } from './context';
import { DatasetsView } from './datasets';
import { ModelsView } from './models';
import { RunsView } from './runs';
import { TasksView } from './tasks';

/** The sidebar: one tab per kind of thing in the store; each loads when first shown. */
export class LLMOSPanel extends TabPanel {
  readonly models: ModelsView;
  readonly datasets: DatasetsView;
  readonly tasks: TasksView;
  readonly runs: RunsView;
  private readonly loaded = new Set<string>();

  constructor(ctx: PanelContext) {
    super({ tabPlacement: 'top' });
    this.id = 'llmos-panel';
    this.addClass('llmos-panel');
    this.node.dataset.testid = 'llmos-panel';
    this.models = new ModelsView(ctx);
    this.datasets = new DatasetsView(ctx);
    this.tasks = new TasksView(ctx);
    this.runs = new RunsView(ctx);
    for (const view of [this.models, this.datasets, this.tasks, this.runs]) this.addWidget(view);
    this.currentChanged.connect(() => this.loadCurrent());
  }

  /** Load the current tab's list the first time the tab (or the panel) is shown. */
  loadCurrent(): void {
    const view = this.currentWidget as ModelsView | DatasetsView | TasksView | RunsView | null;
    if (!view || this.loaded.has(view.id)) return;
    this.loaded.add(view.id);
    if (view !== this.runs) void view.refresh(); // the Runs tab polls itself while shown
  }

  /** Reload every tab that was shown. */
  refreshAll(): void {
    for (const view of [this.models, this.datasets, this.tasks, this.runs]) {
      if (this.loaded.has(view.id)) void view.refresh();
    }
  }

  /** Show the Runs tab, following `runId`. */
  showRun(runId: string): void {
    this.currentWidget = this.runs;
    this.loaded.add(this.runs.id);
    this.runs.follow(runId);
  }

  protected onAfterShow(msg: import('@lumino/messaging').Message): void {
    super.onAfterShow(msg);
    this.loadCurrent();
  }
}
