// A full queue answers 429: the SDK throws RateLimitError with the server's Retry-After.
// The server admits one decoding request and one waiting (`--max-batch 1 --max-queue 1`);
// a burst of concurrent requests overflows it, and the server keeps serving afterwards.

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';

import { LLMOS, RateLimitError } from '../dist/index.js';
import { KEY, MODEL, seededHome, startServe } from './server.mjs';

let store;
let server;

before(async () => {
  store = seededHome();
  server = await startServe(store.home, ['--max-batch', '1', '--max-queue', '1']);
});

after(async () => {
  if (server) await server.stop();
  store?.cleanup();
});

it('a burst over the queue gets RateLimitError with retryAfter, then normal service', async () => {
  const llmos = new LLMOS({ baseUrl: server.url, apiKey: KEY });
  const messages = [{ role: 'user', content: 'Count from one to twenty.' }];
  // One answer first, so every request below meets a loaded model at once.
  assert.ok((await llmos.chat(MODEL, messages, { max_tokens: 2 })).text.length > 0);
  const results = await Promise.allSettled(
    Array.from({ length: 8 }, () => llmos.chat(MODEL, messages, { max_tokens: 32, temperature: 0 })),
  );
  const limited = results.filter((r) => r.status === 'rejected');
  assert.ok(limited.length > 0, 'some request got 429');
  assert.ok(results.some((r) => r.status === 'fulfilled'), 'some request was served');
  for (const { reason } of limited) {
    assert.ok(reason instanceof RateLimitError, String(reason));
    assert.equal(reason.status, 429);
    assert.equal(reason.retryAfter, 1);
    assert.equal(reason.code, 'queue_full');
    assert.match(reason.message, /retry/);
  }
  const streamed = [];
  for await (const piece of llmos.chat(MODEL, messages, { max_tokens: 4, temperature: 0, stream: true })) streamed.push(piece);
  assert.ok(streamed.length > 0);
});
