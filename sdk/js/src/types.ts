/**
 * The records LLMOS servers return. They are what the `llmos` command line prints with
 * `--json` for the same verb; fields the SDK does not name are kept (index signature).
 */

/** A model or preset in the server's catalog (`llmos list --json`). */
export interface ModelRow {
  name: string;
  /** "model", or "preset" for a model plus a system prompt and sampling defaults. */
  kind: string;
  base: string | null;
  format: string | null;
  arch: string | null;
  params: number | null;
  quantization: string | null;
  context_length: number | null;
  size_bytes: number | null;
  /** Human-readable size, e.g. "93.4 MB". */
  size?: string;
  created_at: string | null;
  [field: string]: unknown;
}

/** One model in full (`llmos show NAME --json`). */
export interface ModelRecord extends ModelRow {
  system: string | null;
  default_params: Record<string, unknown>;
  chat_template?: string | null;
  tokenizer?: Record<string, unknown>;
  presets?: string[];
}

/** A model loaded in the server process (`GET api/ps`). */
export interface LoadedModel {
  name: string;
  [field: string]: unknown;
}

/** One event of a pull: progress while downloading, then success with the model. */
export interface PullEvent {
  status: string;
  completed?: number;
  total?: number;
  /** The pulled model's record, on the last event. */
  model?: ModelRecord;
  [field: string]: unknown;
}

/** A dataset (`llmos data list --json`). */
export interface DatasetRow {
  name: string;
  format: string;
  rows: number;
  columns: string[];
  sha256?: string;
  source?: string | null;
  parent?: string | null;
  created_at: string | null;
  [field: string]: unknown;
}

/** A dataset with its first rows (`llmos data show NAME --json`). */
export interface DatasetRecord extends DatasetRow {
  head?: Record<string, unknown>[];
}

/** Formats a dataset can be uploaded in. */
export type DatasetFormat = 'jsonl' | 'json' | 'csv' | 'tsv' | 'txt' | 'parquet';

/** A task (`llmos task list --json`). */
export interface TaskRow {
  name: string;
  builtin: boolean;
  inputs: string[];
  output: string;
  description: string | null;
  updated_at: string | null;
  [field: string]: unknown;
}

/** A task's spec (`llmos task show NAME --json`). */
export interface TaskSpec {
  name: string;
  inputs: string[];
  prompt?: string;
  system?: string | null;
  output?: unknown;
  description?: string | null;
  params?: Record<string, unknown>;
  [field: string]: unknown;
}

/** The answer of `tasks.invoke`: parsed output, raw text, the recorded run and usage. */
export interface TaskOutput {
  output: unknown;
  text: string | null;
  run_id: string;
  status: string;
  usage: Record<string, number> | null;
}

/** Status of a run; the last four are terminal. */
export type RunStatus =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'interrupted'
  | string;

/** A run (`llmos runs show ID --json`); `items` when asked for. */
export interface RunRecord {
  id: string;
  task?: string | null;
  kind?: string;
  model: string | null;
  dataset: string | null;
  status: RunStatus;
  total: number | null;
  done: number;
  failed: number;
  error: string | null;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  progress?: { done: number; total: number | null; [field: string]: unknown };
  items?: RunItem[];
  [field: string]: unknown;
}

/** One item (row) of a run's results. */
export interface RunItem {
  [field: string]: unknown;
}

/** The statuses after which a run no longer changes. */
export const TERMINAL_STATUSES: readonly string[] = [
  'succeeded',
  'failed',
  'cancelled',
  'interrupted',
];

/** Whether a run with this status is over. */
export function isTerminal(status: string): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** A chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

/** Sampling settings of chat and generate (OpenAI's names). */
export interface SamplingOptions {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  response_format?: Record<string, unknown>;
  /** Any other field is sent as is. */
  [field: string]: unknown;
}

/** Options of one request. */
export interface RequestOptions {
  /** Aborts the request (and a stream: the server stops generating). */
  signal?: AbortSignal;
}

/** A finished (non-streamed) generation. */
export interface Completion {
  text: string;
  finish_reason: string | null;
  /** prompt_tokens_details.cached_tokens: prompt tokens continued from the KV cache (a
   * chat's next turn), not prefilled again. */
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens: number;
    prompt_tokens_details?: { cached_tokens: number };
  } | null;
  /** The server's whole answer. */
  raw: Record<string, unknown>;
}
