/**
 * Errors of the LLMOS SDK. Every failed request throws an `LLMOSError` (or a subclass for
 * the statuses a program usually handles differently) carrying the HTTP status, the
 * server's error code and its message, which names what to fix.
 */

/** The body LLMOS servers send with an error (OpenAI's shape). */
export interface ErrorBody {
  error?: { message?: string; type?: string; code?: string | null; param?: string | null };
  /** Jupyter's own handlers answer `{message, reason}` instead. */
  message?: string;
  reason?: string | null;
}

/** Details a server error carries. */
export interface LLMOSErrorInit {
  status: number;
  message: string;
  code?: string | null;
  type?: string | null;
  param?: string | null;
  url?: string;
}

/** A request to the LLMOS server failed: `status` (0 when no answer came), `code`, `message`. */
export class LLMOSError extends Error {
  /** HTTP status of the answer; 0 when the server could not be reached. */
  readonly status: number;
  /** The server's machine-readable code, e.g. "model_not_found", "queue_full". */
  readonly code: string | null;
  /** The server's error type, e.g. "invalid_request_error". */
  readonly type: string | null;
  /** The request field the error is about, when the server names one. */
  readonly param: string | null;
  /** The URL that was requested. */
  readonly url: string | undefined;

  constructor(init: LLMOSErrorInit) {
    super(init.message);
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code ?? null;
    this.type = init.type ?? null;
    this.param = init.param ?? null;
    this.url = init.url;
  }
}

/** 401 or 403: a missing or wrong API key, Jupyter token or XSRF cookie. */
export class AuthError extends LLMOSError {}

/** 404: no such model, dataset, task, run or route (`code` says which). */
export class NotFoundError extends LLMOSError {}

/** 429: the server's queue is full; retry after `retryAfter` seconds. */
export class RateLimitError extends LLMOSError {
  /** Seconds the server asks to wait before retrying (its Retry-After header), or null. */
  readonly retryAfter: number | null;

  constructor(init: LLMOSErrorInit & { retryAfter?: number | null }) {
    super(init);
    this.retryAfter = init.retryAfter ?? null;
  }
}

/** The error for a failed response: the subclass its status maps to, with the server's message. */
export async function errorFromResponse(response: Response, url: string): Promise<LLMOSError> {
  const text = await response.text().catch(() => '');
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    // Not JSON (a proxy's HTML page, say): the text itself is the best message there is.
  }
  const err = body && typeof body === 'object' ? body.error : undefined;
  const message =
    err?.message ??
    body?.message ??
    (text.trim().slice(0, 500) || `${response.status} ${response.statusText}`);
  const init: LLMOSErrorInit = {
    status: response.status,
    message,
    code: err?.code ?? null,
    type: err?.type ?? body?.reason ?? null,
    param: err?.param ?? null,
    url,
  };
  return errorFromStatus(init, response.headers.get('Retry-After'));
}

/** The LLMOSError subclass for `init.status`. */
export function errorFromStatus(init: LLMOSErrorInit, retryAfter?: string | null): LLMOSError {
  if (init.status === 401 || init.status === 403) return new AuthError(init);
  if (init.status === 404) return new NotFoundError(init);
  if (init.status === 429) {
    const seconds = retryAfter == null ? NaN : Number(retryAfter);
    return new RateLimitError({ ...init, retryAfter: Number.isFinite(seconds) ? seconds : null });
  }
  return new LLMOSError(init);
}
