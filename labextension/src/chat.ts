/** The chat: a conversation with a model, streamed as it writes, with Stop. */

import type { ChatMessage, LLMOS } from '@llmos/sdk';
import { Widget } from '@lumino/widgets';

import { button, errorText, h } from './dom';

/** A chat with one model of the server (the model can be switched between turns). */
export class ChatView extends Widget {
  private readonly history: ChatMessage[] = [];
  private readonly log: HTMLElement = h('div', { class: 'llmos-chat-log', 'data-testid': 'llmos-chat-log' });
  private readonly input: HTMLTextAreaElement;
  private readonly modelSelect: HTMLSelectElement;
  private readonly send: HTMLButtonElement;
  private readonly stop: HTMLButtonElement;
  private readonly status: HTMLElement = h('span', { class: 'llmos-muted', 'data-testid': 'llmos-chat-status' });
  private abort: AbortController | null = null;

  constructor(private readonly client: LLMOS, model: string) {
    super();
    this.id = 'llmos-chat';
    this.title.label = 'LLMOS Chat';
    this.title.closable = true;
    this.addClass('llmos-chat');
    this.modelSelect = h('select', { 'data-testid': 'llmos-chat-model' }, h('option', { value: model }, model));
    this.modelSelect.value = model;
    this.input = h('textarea', { placeholder: 'Message (Enter sends, Shift+Enter for a new line)', 'data-testid': 'llmos-chat-input' });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        void this.ask();
      }
    });
    this.send = button('Send', () => void this.ask(), { testid: 'llmos-chat-send' });
    this.stop = button('Stop', () => this.abort?.abort(), { testid: 'llmos-chat-stop' });
    this.stop.disabled = true;
    this.node.append(
      h('div', { class: 'llmos-toolbar' }, 'Model ', this.modelSelect,
        button('Clear', () => this.clear()), this.status),
      this.log,
      h('div', { class: 'llmos-chat-input' }, this.input, this.send, this.stop),
    );
    void this.loadModels(model);
  }

  /** Switch to `model` for the next turns. */
  setModel(model: string): void {
    if (![...this.modelSelect.options].some((o) => o.value === model)) {
      this.modelSelect.append(h('option', { value: model }, model));
    }
    this.modelSelect.value = model;
  }

  private async loadModels(current: string): Promise<void> {
    try {
      const models = await this.client.models.list();
      this.modelSelect.replaceChildren(...models.map((m) => h('option', { value: m.name }, m.name)));
      this.setModel(current);
    } catch (e) {
      this.status.textContent = errorText(e);
    }
  }

  private clear(): void {
    this.abort?.abort();
    this.history.length = 0;
    this.log.replaceChildren();
  }

  private async ask(): Promise<void> {
    const text = this.input.value.trim();
    if (!text || this.abort) return;
    this.input.value = '';
    this.history.push({ role: 'user', content: text });
    this.log.append(h('div', { class: 'llmos-chat-msg llmos-chat-user' }, text));
    const answer = h('div', { class: 'llmos-chat-msg llmos-chat-assistant', 'data-testid': 'llmos-chat-answer' });
    this.log.append(answer);
    this.abort = new AbortController();
    this.send.disabled = true;
    this.stop.disabled = false;
    this.status.textContent = 'generating…';
    const started = performance.now();
    let pieces = 0;
    let reply = '';
    try {
      for await (const piece of this.client.chat(this.modelSelect.value, this.history, { stream: true, signal: this.abort.signal })) {
        reply += piece;
        pieces++;
        answer.textContent = reply;
        this.log.scrollTop = this.log.scrollHeight;
      }
      this.status.textContent = `done: ${pieces} pieces, ${(pieces / ((performance.now() - started) / 1000)).toFixed(1)} pieces/s`;
    } catch (e) {
      if (e instanceof Error && e.name === 'AbortError') {
        this.status.textContent = 'stopped';
        answer.dataset.stopped = 'true';
      } else {
        this.status.textContent = '';
        answer.append(h('div', { class: 'llmos-error' }, errorText(e)));
      }
    } finally {
      this.history.push({ role: 'assistant', content: reply });
      this.abort = null;
      this.send.disabled = false;
      this.stop.disabled = true;
      answer.dataset.done = 'true';
    }
  }
}
