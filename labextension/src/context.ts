/** What every view of the panel shares: the SDK client, settings and app actions. */

import type { LLMOS } from '@llmos/sdk';

/** Shared state and actions the extension gives its views. */
export interface PanelContext {
  /** The LLMOS client on Jupyter's server connection. */
  client: LLMOS;
  /** The model chat and new runs use unless another is chosen (the `defaultModel` setting). */
  defaultModel(): string;
  /** Seconds between polls of live lists. */
  refreshSeconds(): number;
  /** Insert `code` as a new cell below the active cell of the current notebook (once it has loaded). */
  insertMagic(code: string): Promise<void>;
  /** Open the chat with `model`. */
  openChat(model?: string): void;
  /** Switch the panel to the Runs tab and follow `runId`. */
  showRun(runId: string): void;
}
