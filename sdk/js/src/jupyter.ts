/**
 * The LLMOS routes of a Jupyter server (`{base_url}llmos/`), reached with Jupyter's own
 * credentials. Takes the fields of JupyterLab's `ServerConnection.ISettings` without
 * depending on @jupyterlab packages:
 *
 *     import { ServerConnection } from '@jupyterlab/services';
 *     const llmos = new LLMOS(jupyterOptions(ServerConnection.makeSettings()));
 */

import type { LLMOSOptions } from './client.js';
import type { FetchLike } from './transport.js';

/** The parts of JupyterLab's ServerConnection.ISettings the SDK uses. */
export interface JupyterSettings {
  /** Jupyter's base URL, e.g. `http://localhost:8888/` (ServerConnection settings.baseUrl). */
  baseUrl: string;
  /** Jupyter's token, when the page was opened with one (settings.token). */
  token?: string;
  /** The fetch JupyterLab uses (settings.fetch). */
  fetch?: (input: RequestInfo, init?: RequestInit) => Promise<Response>;
  /** Request defaults, e.g. `{credentials: 'same-origin'}` (settings.init). */
  init?: RequestInit;
}

/**
 * LLMOS options for the Jupyter server at `settings`: base URL `{baseUrl}llmos/`, the
 * token as `Authorization: token ...`, and (in a browser) the `_xsrf` cookie as the
 * X-XSRFToken header Jupyter requires of cookie-authenticated writes.
 */
export function jupyterOptions(settings: JupyterSettings): LLMOSOptions {
  const base = settings.baseUrl.endsWith('/') ? settings.baseUrl : `${settings.baseUrl}/`;
  const inner = settings.fetch ?? ((input: RequestInfo, init?: RequestInit) => globalThis.fetch(input, init));
  const defaults = settings.init ?? { credentials: 'same-origin' as RequestCredentials };
  const headers: Record<string, string> = {};
  if (settings.token) headers.Authorization = `token ${settings.token}`;
  const fetchFn: FetchLike = (input, init = {}) => {
    const merged = new Headers(defaults.headers);
    new Headers(init.headers).forEach((value, key) => merged.set(key, value));
    const xsrf = cookie('_xsrf');
    if (xsrf && !merged.has('X-XSRFToken')) merged.set('X-XSRFToken', xsrf);
    return inner(input, { ...defaults, ...init, headers: merged });
  };
  return { baseUrl: `${base}llmos/`, headers, fetch: fetchFn };
}

/** A cookie's value in a browser page (none in Node). */
function cookie(name: string): string | undefined {
  const doc = (globalThis as { document?: { cookie?: string } }).document;
  const found = doc?.cookie?.match(`(?:^|; )${name}=([^;]*)`);
  return found ? decodeURIComponent(found[1]) : undefined;
}
