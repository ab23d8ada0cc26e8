/** `client.models`: the server's model catalog, pulls, and models loaded in its process. */

import { Transport, seg } from './transport.js';
import type { LoadedModel, ModelRecord, ModelRow, PullEvent, RequestOptions } from './types.js';

/** Models and presets of the server's store (`llmos list`, `show`, `pull`, `rm`, `ps`). */
export class Models {
  constructor(private readonly http: Transport) {}

  /** Every model and preset in the store. */
  list(opts: RequestOptions = {}): Promise<ModelRow[]> {
    return this.http.json('api/models', opts);
  }

  /** One model or preset in full; NotFoundError when there is none by that name. */
  show(name: string, opts: RequestOptions = {}): Promise<ModelRecord> {
    return this.http.json(`api/models/${seg(name)}`, opts);
  }

  /**
   * Pull a model into the server's store, as progress events: `{status: "downloading",
   * completed, total}` while bytes arrive, then `{status: "success", model}`.
   *
   *     for await (const ev of client.models.pull('smollm2-135m-instruct')) console.log(ev);
   */
  async *pull(name: string, opts: RequestOptions = {}): AsyncGenerator<PullEvent> {
    const events = this.http.events<PullEvent>('api/models/pull', {
      json: { name, stream: true },
      signal: opts.signal,
    });
    for await (const ev of events) {
      // The last event carries the pulled model's record (as `result`).
      if (ev.model === undefined && ev.result !== undefined) ev.model = ev.result as ModelRecord;
      yield ev;
    }
  }

  /** A preset: `base` with a system prompt and sampling defaults (`llmos create`). */
  create(
    name: string,
    spec: { base: string; system?: string; param?: Record<string, unknown> },
    opts: RequestOptions = {},
  ): Promise<ModelRecord> {
    return this.http.json('api/models/create', { json: { name, ...spec }, signal: opts.signal });
  }

  /** Copy a model or preset under a new name (`llmos cp`). */
  cp(src: string, dst: string, opts: RequestOptions = {}): Promise<{ message: string }> {
    return this.http.json('api/models/cp', { json: { src, dst }, signal: opts.signal });
  }

  /** Remove a model (with `cascade`, also the presets built on it). */
  rm(name: string, opts: RequestOptions & { cascade?: boolean } = {}): Promise<{ message: string }> {
    return this.http.json(`api/models/${seg(name)}`, {
      method: 'DELETE',
      query: { cascade: opts.cascade ? 'true' : undefined },
      signal: opts.signal,
    });
  }

  /** Load a model into the server's process, so its first request answers at once. */
  load(name: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.http.json(`api/models/${seg(name)}/load`, { method: 'POST', signal: opts.signal });
  }

  /** Free a loaded model's memory in the server. */
  unload(name: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.http.json(`api/models/${seg(name)}/unload`, { method: 'POST', signal: opts.signal });
  }

  /** The models loaded in the server's process. */
  ps(opts: RequestOptions = {}): Promise<LoadedModel[]> {
    return this.http.json('api/ps', opts);
  }
}
