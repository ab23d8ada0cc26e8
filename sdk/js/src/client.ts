/** The `LLMOS` client: one server, its resources, and generation over its /v1 routes. */

import { Datasets } from './datasets.js';
import { Models } from './models.js';
import { Runs } from './runs.js';
import { Tasks } from './tasks.js';
import { Transport, type FetchLike } from './transport.js';
import type { ChatMessage, Completion, RequestOptions, SamplingOptions } from './types.js';

/** How to reach a server. */
export interface LLMOSOptions {
  /**
   * The server's root: `http://127.0.0.1:8765/` for `llmos serve`, or
   * `{jupyter base_url}llmos/` inside Jupyter.
   */
  baseUrl: string;
  /** The key given to `llmos serve --api-key` (sent as `Authorization: Bearer KEY`). */
  apiKey?: string;
  /** The fetch to use (default: the global one), e.g. one that adds cookies or XSRF. */
  fetch?: FetchLike;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
}

/** Options of `chat` and `generate`. */
export type GenerationOptions = SamplingOptions & RequestOptions & { stream?: boolean };

/**
 * A client of one LLMOS server (`llmos serve`, or the Jupyter server extension).
 *
 *     const llmos = new LLMOS({ baseUrl: 'http://127.0.0.1:8765', apiKey: 'KEY' });
 *     await llmos.models.list();
 *     for await (const text of llmos.chat(model, [{ role: 'user', content: 'Hi' }], { stream: true }))
 *       process.stdout.write(text);
 */
export class LLMOS {
  /** The server's root URL, ending in "/". */
  readonly baseUrl: string;
  /** Models and presets. */
  readonly models: Models;
  /** Datasets. */
  readonly datasets: Datasets;
  /** Tasks. */
  readonly tasks: Tasks;
  /** Task runs. */
  readonly runs: Runs;
  private readonly http: Transport;

  constructor(options: LLMOSOptions) {
    if (!options || typeof options.baseUrl !== 'string' || options.baseUrl === '') {
      throw new TypeError(
        "LLMOS needs the server's address: new LLMOS({ baseUrl: 'http://127.0.0.1:8765' })",
      );
    }
    let root: URL;
    try {
      root = new URL(options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`);
    } catch {
      throw new TypeError(
        `baseUrl ${JSON.stringify(options.baseUrl)} is not an absolute URL; pass e.g. 'http://127.0.0.1:8765'`,
      );
    }
    const fetchFn = options.fetch ?? globalFetch();
    const headers: Record<string, string> = { ...options.headers };
    if (options.apiKey) headers.Authorization = `Bearer ${options.apiKey}`;
    this.baseUrl = root.toString();
    this.http = new Transport(this.baseUrl, fetchFn, headers);
    this.models = new Models(this.http);
    this.datasets = new Datasets(this.http);
    this.tasks = new Tasks(this.http);
    this.runs = new Runs(this.http);
  }

  /** The server's health: `{status: "ok", ...}` (needs no key). */
  health(opts: RequestOptions = {}): Promise<Record<string, unknown>> {
    return this.http.json('health', opts);
  }

  /**
   * A chat turn with `model`. With `{stream: true}`, an async iterator of text deltas as
   * the model writes them (leaving the loop, or aborting `signal`, stops the generation);
   * otherwise the finished Completion.
   */
  chat(model: string, messages: ChatMessage[], opts: GenerationOptions & { stream: true }): AsyncGenerator<string>;
  chat(model: string, messages: ChatMessage[], opts?: GenerationOptions & { stream?: false }): Promise<Completion>;
  chat(
    model: string,
    messages: ChatMessage[],
    opts: GenerationOptions = {},
  ): AsyncGenerator<string> | Promise<Completion> {
    const { signal, stream, ...sampling } = opts;
    const body = { ...sampling, model, messages };
    if (stream) {
      return this.deltas('v1/chat/completions', { ...body, stream: true }, signal, (c) => c.delta?.content);
    }
    return this.complete('v1/chat/completions', body, signal, (c) => c.message?.content);
  }

  /**
   * Continue `prompt` as written (no chat template). With `{stream: true}`, an async
   * iterator of text deltas; otherwise the finished Completion.
   */
  generate(model: string, prompt: string, opts: GenerationOptions & { stream: true }): AsyncGenerator<string>;
  generate(model: string, prompt: string, opts?: GenerationOptions & { stream?: false }): Promise<Completion>;
  generate(
    model: string,
    prompt: string,
    opts: GenerationOptions = {},
  ): AsyncGenerator<string> | Promise<Completion> {
    const { signal, stream, ...sampling } = opts;
    const body = { ...sampling, model, prompt };
    if (stream) {
      return this.deltas('v1/completions', { ...body, stream: true }, signal, (c) => c.text);
    }
    return this.complete('v1/completions', body, signal, (c) => c.text);
  }

  private async complete(
    path: string,
    body: Record<string, unknown>,
    signal: AbortSignal | undefined,
    text: (choice: Choice) => string | null | undefined,
  ): Promise<Completion> {
    const raw = await this.http.json<{ choices: Choice[]; usage?: Completion['usage'] }>(path, {
      json: body,
      signal,
    });
    const choice = raw.choices[0];
    return {
      text: text(choice) ?? '',
      finish_reason: choice.finish_reason ?? null,
      usage: raw.usage ?? null,
      raw: raw as unknown as Record<string, unknown>,
    };
  }

  private async *deltas(
    path: string,
    body: Record<string, unknown>,
    signal: AbortSignal | undefined,
    text: (choice: Choice) => string | null | undefined,
  ): AsyncGenerator<string> {
    for await (const chunk of this.http.events<{ choices: Choice[] }>(path, { json: body, signal })) {
      for (const choice of chunk.choices ?? []) {
        if ((choice.index ?? 0) !== 0) continue;
        const piece = text(choice);
        if (piece) yield piece;
      }
    }
  }
}

interface Choice {
  index?: number;
  text?: string;
  message?: { content?: string };
  delta?: { content?: string };
  finish_reason?: string | null;
}

function globalFetch(): FetchLike {
  if (typeof globalThis.fetch !== 'function') {
    throw new TypeError(
      'this runtime has no global fetch (Node 18+ and browsers do); pass one: new LLMOS({ baseUrl, fetch })',
    );
  }
  return (input, init) => globalThis.fetch(input, init);
}
