/**
 * llmos-jupyter: the LLMOS sidebar in JupyterLab. Every call goes through @llmos/sdk on
 * Jupyter's own server connection (the server extension's routes under `{base_url}llmos/`,
 * with Jupyter's token and XSRF cookie).
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { LLMOS, jupyterOptions } from '@llmos/sdk';

import { ChatView } from './chat';
import type { PanelContext } from './context';
import { LLMOSPanel } from './panel';
import logoSvg from '../style/logo.svg';

const PLUGIN_ID = 'llmos-jupyter:plugin';

/** The LLMOS icon of the sidebar tab and the settings. */
export const llmosIcon = new LabIcon({ name: 'llmos:logo', svgstr: logoSvg });

/** Command ids. */
export const CommandIDs = {
  open: 'llmos:open',
  chat: 'llmos:chat',
  refresh: 'llmos:refresh',
  insertLoad: 'llmos:insert-load',
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'LLMOS models, datasets, tasks, runs and chat in the left sidebar.',
  autoStart: true,
  requires: [],
  optional: [ICommandPalette, ISettingRegistry, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
  ) => {
    const client = new LLMOS(jupyterOptions(ServerConnection.makeSettings()));
    const settings = { defaultModel: 'smollm2-135m-instruct', refreshSeconds: 1 };
    let chat: MainAreaWidget<ChatView> | null = null;

    const insertMagic = async (code: string): Promise<void> => {
      const panel = notebooks?.currentWidget;
      if (!panel) {
        Notification.warning(`Open a notebook to insert: ${code}`, { autoClose: 5000 });
        return;
      }
      // A notebook still loading replaces its cells with the file's when the load ends,
      // which would drop a cell inserted now.
      await panel.context.ready;
      const notebook = panel.content;
      NotebookActions.insertBelow(notebook);
      notebook.activeCell?.model.sharedModel.setSource(code);
      app.shell.activateById(panel.id);
    };

    const openChat = (model?: string): void => {
      if (!chat || chat.isDisposed) {
        chat = new MainAreaWidget({ content: new ChatView(client, model ?? settings.defaultModel) });
        chat.id = 'llmos-chat-area';
        chat.title.label = 'LLMOS Chat';
        chat.title.icon = llmosIcon;
        app.shell.add(chat, 'main');
      } else if (model) {
        chat.content.setModel(model);
      }
      app.shell.activateById(chat.id);
    };

    const ctx: PanelContext = {
      client,
      defaultModel: () => settings.defaultModel,
      refreshSeconds: () => settings.refreshSeconds,
      insertMagic,
      openChat,
      showRun: (id) => {
        panel.showRun(id);
        app.shell.activateById(panel.id);
      },
    };
    const panel = new LLMOSPanel(ctx);
    panel.title.icon = llmosIcon;
    panel.title.caption = 'LLMOS';
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'llmos-panel');

    app.commands.addCommand(CommandIDs.open, {
      label: 'LLMOS: Open Models, Datasets, Tasks and Runs',
      icon: llmosIcon,
      execute: () => app.shell.activateById(panel.id),
    });
    app.commands.addCommand(CommandIDs.chat, {
      label: 'LLMOS: Chat with the Default Model',
      execute: (args) => openChat(typeof args.model === 'string' ? args.model : undefined),
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'LLMOS: Refresh',
      execute: () => panel.refreshAll(),
    });
    app.commands.addCommand(CommandIDs.insertLoad, {
      label: 'LLMOS: Insert %llmos load of the Default Model',
      execute: () => insertMagic(`%llmos load ${settings.defaultModel}`),
    });
    for (const command of Object.values(CommandIDs)) palette?.addItem({ command, category: 'LLMOS' });

    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then((s) => {
          const read = () => {
            settings.defaultModel = (s.get('defaultModel').composite as string) || settings.defaultModel;
            settings.refreshSeconds = Math.max(0.2, (s.get('refreshSeconds').composite as number) || 1);
          };
          read();
          s.changed.connect(read);
        })
        .catch((e) => console.warn('llmos-jupyter: settings not loaded', e));
    }
  },
};

export default plugin;
