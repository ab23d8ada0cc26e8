/**
 * How the SDK talks HTTP: one `fetch` (the platform's, or the one given), the base URL,
 * the auth and extra headers, and every non-2xx answer turned into a typed LLMOSError.
 */

import { LLMOSError, errorFromResponse } from './errors.js';
import { sseData } from './sse.js';

/** A fetch function (the platform's `fetch`, or a wrapper such as Jupyter's). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** What a request sends. */
export interface Call {
  method?: string;
  /** Query parameters; undefined and null values are left out. */
  query?: Record<string, string | number | boolean | undefined | null>;
  /** A JSON body (serialized here). */
  json?: unknown;
  /** A raw body (an upload). */
  body?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** The HTTP layer shared by every resource of a client. */
export class Transport {
  readonly baseUrl: string;
  private readonly fetchFn: FetchLike;
  private readonly headers: Record<string, string>;

  constructor(baseUrl: string, fetchFn: FetchLike, headers: Record<string, string>) {
    this.baseUrl = baseUrl;
    this.fetchFn = fetchFn;
    this.headers = headers;
  }

  /** The absolute URL of `path` (relative to the base URL) with `query`. */
  url(path: string, query?: Call['query']): string {
    const url = new URL(path, this.baseUrl);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    return url.toString();
  }

  /** The response to `path`; throws the typed LLMOSError for a non-2xx answer. */
  async request(path: string, call: Call = {}): Promise<Response> {
    const url = this.url(path, call.query);
    const headers: Record<string, string> = { ...this.headers, ...call.headers };
    let body = call.body;
    if (call.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(call.json);
    }
    let response: Response;
    try {
      response = await this.fetchFn(url, {
        method: call.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        body,
        signal: call.signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new LLMOSError({
        status: 0,
        code: 'connection_error',
        message: `cannot reach the LLMOS server at ${url}: ${describe(e)}; check the baseUrl and that the server runs`,
        url,
      });
    }
    if (!response.ok) throw await errorFromResponse(response, url);
    return response;
  }

  /** The decoded JSON answer of `path`. */
  async json<T>(path: string, call: Call = {}): Promise<T> {
    const response = await this.request(path, call);
    return (await response.json()) as T;
  }

  /** The body of `path` as a Blob (a file download). */
  async blob(path: string, call: Call = {}): Promise<Blob> {
    const response = await this.request(path, call);
    return response.blob();
  }

  /** The JSON events of a server-sent event stream; `[DONE]` ends it, an error event throws. */
  async *events<T>(path: string, call: Call = {}): AsyncGenerator<T> {
    const response = await this.request(path, {
      ...call,
      headers: { Accept: 'text/event-stream', ...call.headers },
    });
    for await (const data of sseData(response)) {
      if (data === '[DONE]') return;
      const event = JSON.parse(data) as { error?: { message?: string; code?: string; type?: string } };
      if (event && typeof event === 'object' && event.error && typeof event.error === 'object') {
        throw new LLMOSError({
          status: response.status,
          message: event.error.message ?? 'the server reported an error in the stream',
          code: event.error.code ?? null,
          type: event.error.type ?? null,
          url: response.url,
        });
      }
      yield event as Awaited<T>;
    }
  }
}

/** `name` as one path segment. */
export function seg(name: string): string {
  if (typeof name !== 'string' || name === '') {
    throw new TypeError(`expected a non-empty name, got ${JSON.stringify(name)}`);
  }
  return encodeURIComponent(name);
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError');
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}
