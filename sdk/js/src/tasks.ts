/** `client.tasks`: tasks (`llmos task ...`), invoked once or run over a dataset. */

import { Transport, seg } from './transport.js';
import type { RequestOptions, RunRecord, TaskOutput, TaskRow, TaskSpec } from './types.js';

/** What `tasks.run` takes. */
export interface TaskRunOptions extends RequestOptions {
  /** The dataset to run over (each row is one item); the run goes on in the server. */
  data?: string;
  /** Which dataset column feeds each task input: `{text: 'body'}`. */
  map?: Record<string, string>;
  /** The model or preset (the server's default otherwise). */
  model?: string;
  /** Only the first `limit` rows. */
  limit?: number;
  /** Fixed input values (for inputs no column feeds). */
  input?: Record<string, unknown>;
  /** Sampling settings, e.g. `{max_tokens: 32}` (sent as the body's own fields). */
  params?: Record<string, unknown>;
}

/** Tasks of the server's store (built-in and user-defined). */
export class Tasks {
  constructor(private readonly http: Transport) {}

  /** Every task: name, inputs, output kind, description. */
  list(opts: RequestOptions = {}): Promise<TaskRow[]> {
    return this.http.json('api/tasks', opts);
  }

  /** A task's spec. */
  show(name: string, opts: RequestOptions = {}): Promise<TaskSpec> {
    return this.http.json(`api/tasks/${seg(name)}`, opts);
  }

  /** Define (or redefine) a task from its YAML text. */
  add(name: string, yaml: string, opts: RequestOptions = {}): Promise<TaskSpec> {
    return this.http.json(`api/tasks/${seg(name)}`, {
      method: 'PUT',
      body: yaml,
      headers: { 'Content-Type': 'application/yaml' },
      signal: opts.signal,
    });
  }

  /** Remove a user-defined task. */
  rm(name: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.http.json(`api/tasks/${seg(name)}`, { method: 'DELETE', signal: opts.signal });
  }

  /** Run a task on one set of inputs and wait for its output (recorded as a run). */
  invoke(
    name: string,
    inputs: Record<string, unknown>,
    opts: RequestOptions & { model?: string; params?: Record<string, unknown> } = {},
  ): Promise<TaskOutput> {
    return this.http.json(`api/tasks/${seg(name)}/invoke`, {
      json: { inputs, model: opts.model, params: opts.params },
      signal: opts.signal,
    });
  }

  /**
   * Start a run of the task over a dataset; the server runs it in the background and
   * answers at once with the run's record. Follow it with `client.runs.events(run.id)`
   * or `client.runs.wait(run.id)`.
   */
  run(name: string, opts: TaskRunOptions): Promise<RunRecord> {
    const { signal, params, ...body } = opts;
    return this.http.json(`api/tasks/${seg(name)}/run`, { json: { ...params, ...body }, signal });
  }
}
