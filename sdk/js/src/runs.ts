/** `client.runs`: task runs in the server's store, their progress and results. */

import { LLMOSError } from './errors.js';
import { Transport, seg } from './transport.js';
import { isTerminal, type RequestOptions, type RunItem, type RunRecord } from './types.js';

/** Runs: list, inspect, cancel, resume, follow live, read results. */
export class Runs {
  constructor(private readonly http: Transport) {}

  /** The latest runs, newest first (`limit`, default 20), optionally of one `status`. */
  list(opts: RequestOptions & { limit?: number; status?: string } = {}): Promise<RunRecord[]> {
    return this.http.json('api/runs', {
      query: { limit: opts.limit, status: opts.status },
      signal: opts.signal,
    });
  }

  /** One run's record; with `items`, its first results (from `offset`). */
  get(id: string, opts: RequestOptions & { items?: number; offset?: number } = {}): Promise<RunRecord> {
    return this.http.json(`api/runs/${seg(id)}`, {
      query: { items: opts.items, offset: opts.offset },
      signal: opts.signal,
    });
  }

  /** `limit` results of a run from `offset`: one object per item (inputs, output, status). */
  async items(id: string, opts: RequestOptions & { offset?: number; limit?: number } = {}): Promise<RunItem[]> {
    const record = await this.get(id, { items: opts.limit ?? 100, offset: opts.offset ?? 0, signal: opts.signal });
    return record.items ?? [];
  }

  /**
   * A run's results as a file, one row per item (inputs, output, status), in `format`
   * (default jsonl), as a Blob.
   */
  export(id: string, opts: RequestOptions & { format?: 'jsonl' | 'csv' } = {}): Promise<Blob> {
    return this.http.blob(`api/runs/${seg(id)}/export`, {
      query: { format: opts.format },
      signal: opts.signal,
    });
  }

  /** Ask a running run to stop; it ends as "cancelled" after the item in progress. */
  cancel(id: string, opts: RequestOptions = {}): Promise<RunRecord> {
    return this.http.json(`api/runs/${seg(id)}/cancel`, { method: 'POST', signal: opts.signal });
  }

  /** Continue a cancelled or interrupted run where it stopped. */
  resume(id: string, opts: RequestOptions = {}): Promise<RunRecord> {
    return this.http.json(`api/runs/${seg(id)}/resume`, { method: 'POST', signal: opts.signal });
  }

  /**
   * The run's record each time its progress or status changes (the first at once); the
   * iteration ends after a terminal status (succeeded, failed, cancelled, interrupted).
   */
  events(id: string, opts: RequestOptions = {}): AsyncGenerator<RunRecord> {
    return this.http.events<RunRecord>(`api/runs/${seg(id)}/events`, { signal: opts.signal });
  }

  /** Follow a run to its end and return its final record. */
  async wait(id: string, opts: RequestOptions = {}): Promise<RunRecord> {
    let last: RunRecord | undefined;
    for await (const record of this.events(id, opts)) last = record;
    if (!last || !isTerminal(last.status)) {
      throw new LLMOSError({
        status: 0,
        code: 'stream_ended',
        message: `the event stream of run ${id} ended before the run did (last status: ${last?.status ?? 'none'}); call runs.wait again`,
      });
    }
    return last;
  }
}
