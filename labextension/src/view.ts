// What every tab of the panel shares: its identity, the error it shows, whether its first
// load finished, and how an action reports a failure and reloads.

import { Widget } from '@lumino/widgets';

import type { PanelContext } from './context';
import { errorText } from './dom';

/** A tab of the LLMOS panel (Models, Datasets, Tasks, Runs). */
export abstract class View extends Widget {
  protected error = '';
  protected loadingDone = false;

  /** `key` names the tab's id (llmos-KEY) and test id; the subclass renders itself. */
  constructor(protected readonly ctx: PanelContext, key: string, label: string) {
    super();
    this.addClass('llmos-view');
    this.id = `llmos-${key}`;
    this.title.label = label;
    this.node.dataset.testid = `llmos-${key}`;
  }

  /** Fetch what the tab shows (it throws on a failed call). */
  protected abstract load(): Promise<void>;

  /** Draw the tab from what it holds. */
  protected abstract render(): void;

  /** Reload what the tab shows from the server; a failure becomes the tab's error. */
  async refresh(): Promise<void> {
    try {
      await this.load();
      this.error = '';
    } catch (e) {
      this.error = errorText(e);
    }
    this.loadingDone = true;
    this.render();
  }

  /** Run an action; a failure becomes the tab's error; then reload. */
  protected async act(call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (e) {
      this.error = errorText(e);
    }
    await this.refresh();
  }
}
