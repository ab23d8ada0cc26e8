// Every method of the SDK against a real `llmos serve` (with an API key) over a temporary
// store seeded with the default model.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { AuthError, LLMOS, LLMOSError, NotFoundError, isTerminal } from '../dist/index.js';
import { KEY, MODEL, seededHome, startServe } from './server.mjs';

const REVIEWS = [
  'The battery lasts two days and the screen is bright.',
  'Stopped working after a week; support never answered.',
  'Comfortable, light, and the sound is better than expected.',
  'Shipping took a month and the box arrived crushed.',
];
const SHORT = { max_tokens: 8, temperature: 0 };

let store;
let server;
let llmos;

before(async () => {
  store = seededHome();
  server = await startServe(store.home);
  llmos = new LLMOS({ baseUrl: server.url, apiKey: KEY });
});

after(async () => {
  const log = server ? await server.stop() : '';
  store?.cleanup();
  assert.match(log, /stopped|draining/);
});

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

describe('construction', () => {
  it('normalizes the base URL to end in a slash', () => {
    assert.equal(new LLMOS({ baseUrl: 'http://127.0.0.1:1/llmos' }).baseUrl, 'http://127.0.0.1:1/llmos/');
  });

  it('refuses a missing or relative base URL, naming the fix', () => {
    assert.throws(() => new LLMOS({}), /baseUrl: 'http:\/\/127\.0\.0\.1:8765'/);
    assert.throws(() => new LLMOS({ baseUrl: 'llmos/' }), /"llmos\/" is not an absolute URL/);
  });

  it('sends extra headers and uses the given fetch', async () => {
    const seen = [];
    const client = new LLMOS({
      baseUrl: server.url,
      apiKey: KEY,
      headers: { 'X-Trace': 'abc' },
      fetch: (url, init) => {
        seen.push([url, new Headers(init.headers).get('X-Trace')]);
        return fetch(url, init);
      },
    });
    await client.health();
    assert.deepEqual(seen, [[`${server.url}/health`, 'abc']]);
  });
});

describe('models', () => {
  it('list has the default model with size, format and quantization', async () => {
    const rows = await llmos.models.list();
    const row = rows.find((r) => r.name === MODEL);
    assert.ok(row, `${MODEL} in ${JSON.stringify(rows.map((r) => r.name))}`);
    assert.equal(row.format, 'gguf');
    assert.equal(row.quantization, 'Q4_1');
    assert.ok(row.size_bytes > 50e6);
  });

  it('show gives the whole record', async () => {
    const rec = await llmos.models.show(MODEL);
    assert.equal(rec.name, MODEL);
    assert.equal(rec.arch, 'llama');
    assert.ok(rec.context_length >= 2048);
  });

  it('pull streams progress events ending in success with the model', async () => {
    const events = await collect(llmos.models.pull(MODEL));
    assert.ok(events.length >= 1);
    const last = events.at(-1);
    assert.equal(last.status, 'success');
    assert.equal(last.model.name, MODEL);
    for (const ev of events.slice(0, -1)) {
      assert.equal(typeof ev.status, 'string');
      if (ev.total) assert.ok(ev.completed <= ev.total);
    }
  });

  it('pull of an unknown model throws NotFoundError naming it', async () => {
    await assert.rejects(collect(llmos.models.pull('no-such-model-xyz')), (e) => {
      assert.ok(e instanceof LLMOSError);
      assert.match(e.message, /no-such-model-xyz/);
      return true;
    });
  });

  it('create, cp and rm a preset', async () => {
    const preset = await llmos.models.create('sdk-pirate', { base: MODEL, system: 'Answer like a pirate.' });
    assert.equal(preset.name, 'sdk-pirate');
    const copied = await llmos.models.cp('sdk-pirate', 'sdk-pirate-2');
    assert.match(copied.message, /sdk-pirate-2/);
    assert.equal((await llmos.models.show('sdk-pirate-2')).system, 'Answer like a pirate.');
    let names = (await llmos.models.list()).map((r) => r.name);
    assert.ok(names.includes('sdk-pirate') && names.includes('sdk-pirate-2'), names.join());
    await llmos.models.rm('sdk-pirate-2');
    await llmos.models.rm('sdk-pirate');
    names = (await llmos.models.list()).map((r) => r.name);
    assert.ok(!names.includes('sdk-pirate') && !names.includes('sdk-pirate-2'), names.join());
  });

  it('load, ps and unload', async () => {
    await llmos.models.load(MODEL);
    assert.ok((await llmos.models.ps()).some((m) => m.name === MODEL));
    await llmos.models.unload(MODEL);
    assert.ok(!(await llmos.models.ps()).some((m) => m.name === MODEL));
  });

  it('show of a missing model is a NotFoundError with the code and message', async () => {
    await assert.rejects(llmos.models.show('no-such-model'), (e) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      assert.match(e.message, /no-such-model/);
      return true;
    });
  });
});

describe('datasets', () => {
  it('upload text, bytes and a Blob in their formats', async () => {
    const jsonl = REVIEWS.map((text) => JSON.stringify({ text })).join('\n') + '\n';
    const a = await llmos.datasets.upload('sdk-reviews', jsonl, { format: 'jsonl' });
    assert.equal(a.rows, REVIEWS.length);
    assert.deepEqual(a.columns, ['text']);
    const csv = new TextEncoder().encode('title,body\nA,first body\nB,second body\n');
    const b = await llmos.datasets.upload('sdk-csv', csv, { format: 'csv' });
    assert.equal(b.rows, 2);
    assert.deepEqual(b.columns, ['title', 'body']);
    const blob = new Blob(['one line\nanother line\n'], { type: 'text/plain' });
    const c = await llmos.datasets.upload('sdk-txt', blob, { format: 'txt' });
    assert.equal(c.rows, 2);
  });

  it('upload without a format is refused before any request', () => {
    assert.throws(() => llmos.datasets.upload('x', 'a'), /needs the data's format/);
  });

  it('upload over an existing name needs replace', async () => {
    await assert.rejects(llmos.datasets.upload('sdk-txt', 'x\n', { format: 'txt' }), (e) => {
      assert.ok(e instanceof LLMOSError);
      assert.equal(e.status, 400);
      assert.match(e.message, /already exists.*replace/);
      return true;
    });
    const again = await llmos.datasets.upload('sdk-txt', 'x\ny\nz\n', { format: 'txt', replace: true });
    assert.equal(again.rows, 3);
  });

  it('export gives the rows back as jsonl and csv files', async () => {
    const jsonl = await (await llmos.datasets.export('sdk-reviews')).text();
    assert.deepEqual(jsonl.trim().split('\n').map((line) => JSON.parse(line).text), REVIEWS);
    const csv = await (await llmos.datasets.export('sdk-csv', { format: 'csv' })).text();
    assert.deepEqual(csv.trim().split(/\r?\n/), ['title,body', 'A,first body', 'B,second body']);
    await assert.rejects(llmos.datasets.export('no-such-data'), (e) => e instanceof NotFoundError);
  });

  it('list, show with head, stats', async () => {
    const rows = await llmos.datasets.list();
    const row = rows.find((r) => r.name === 'sdk-reviews');
    assert.equal(row.rows, REVIEWS.length);
    const shown = await llmos.datasets.show('sdk-reviews', { head: 2 });
    assert.deepEqual(shown.head.map((r) => r.text), REVIEWS.slice(0, 2));
    const stats = await llmos.datasets.stats('sdk-reviews');
    assert.equal(stats.rows, REVIEWS.length);
    assert.ok(stats.columns.text);
  });

  it('rm, then show is a NotFoundError', async () => {
    await llmos.datasets.rm('sdk-csv');
    await assert.rejects(llmos.datasets.show('sdk-csv'), (e) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.code, 'dataset_not_found');
      return true;
    });
  });
});

describe('tasks and runs', () => {
  const yaml = [
    'description: Name the topic of a text in a few words.',
    'inputs: [text]',
    'prompt: "Topic of this text in three words: {text}"',
    'params:',
    '  max_tokens: 8',
    '  temperature: 0',
    '',
  ].join('\n');

  it('list has the built-in tasks', async () => {
    const names = (await llmos.tasks.list()).map((t) => t.name);
    assert.ok(names.includes('summarize'), names.join());
  });

  it('add from YAML, then show the spec', async () => {
    await llmos.tasks.add('sdk-topic', yaml);
    const spec = await llmos.tasks.show('sdk-topic');
    assert.deepEqual(spec.inputs, ['text']);
    assert.match(spec.prompt, /three words/);
  });

  it('invoke returns the output and the recorded run', async () => {
    const out = await llmos.tasks.invoke('sdk-topic', { text: REVIEWS[0] });
    assert.equal(out.status, 'succeeded');
    assert.equal(typeof out.text, 'string');
    const run = await llmos.runs.get(out.run_id);
    assert.equal(run.id, out.run_id);
  });

  it('run over a dataset; events follow it to succeeded; items are the results', async () => {
    const run = await llmos.tasks.run('sdk-topic', { data: 'sdk-reviews', map: { text: 'text' }, limit: 3, model: MODEL });
    assert.ok(run.id);
    const seen = await collect(llmos.runs.events(run.id));
    assert.ok(seen.length >= 1);
    assert.equal(seen.at(-1).status, 'succeeded');
    assert.ok(seen.every((r) => r.id === run.id));
    for (const r of seen.slice(0, -1)) assert.ok(!isTerminal(r.status));
    const items = await llmos.runs.items(run.id);
    assert.equal(items.length, 3);
    assert.ok(items.every((i) => i.status === 'succeeded' && typeof i.output === 'string'));
    const page = await llmos.runs.items(run.id, { offset: 1, limit: 1 });
    assert.deepEqual(page, [items[1]]);
    const exported = (await (await llmos.runs.export(run.id)).text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(exported.map((r) => r.output), items.map((i) => i.output));
    const csv = await (await llmos.runs.export(run.id, { format: 'csv' })).text();
    assert.equal(csv.trim().split(/\r?\n/).length, items.length + 1);
    const listed = await llmos.runs.list({ limit: 50 });
    assert.ok(listed.some((r) => r.id === run.id));
    const ok = await llmos.runs.list({ status: 'succeeded' });
    assert.ok(ok.every((r) => r.status === 'succeeded'));
  });

  it('cancel stops a run; wait returns it cancelled', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `${REVIEWS[i % 4]} (${i})` }));
    await llmos.datasets.upload('sdk-many', rows.join('\n'), { format: 'jsonl' });
    const run = await llmos.tasks.run('summarize', { data: 'sdk-many', params: { max_tokens: 24 } });
    await llmos.runs.cancel(run.id);
    const cancelled = await llmos.runs.wait(run.id);
    assert.equal(cancelled.status, 'cancelled');
    assert.ok(cancelled.done < 12, `done ${cancelled.done}`);
  });

  it('resume continues a run whose server died, to the end', async () => {
    // A second server on the same store starts the run and is killed while it runs.
    const other = await startServe(store.home);
    try {
      const remote = new LLMOS({ baseUrl: other.url, apiKey: KEY });
      const run = await remote.tasks.run('summarize', { data: 'sdk-many', params: { max_tokens: 24 } });
      for await (const r of remote.runs.events(run.id)) if (r.status === 'running') break;
      await other.kill();
      const resumed = await llmos.runs.resume(run.id);
      assert.equal(resumed.id, run.id);
      const finished = await llmos.runs.wait(run.id);
      assert.equal(finished.status, 'succeeded');
      assert.equal(finished.done, 12);
    } finally {
      await other.kill();
    }
  });

  it('rm a task, then invoke is a NotFoundError', async () => {
    await llmos.tasks.rm('sdk-topic');
    await assert.rejects(llmos.tasks.invoke('sdk-topic', { text: 'x' }), (e) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.code, 'task_not_found');
      return true;
    });
  });

  it('a missing run is a NotFoundError', async () => {
    await assert.rejects(llmos.runs.get('nosuchrun'), (e) => e instanceof NotFoundError && e.code === 'run_not_found');
  });
});

describe('generation', () => {
  const messages = [{ role: 'user', content: 'Name three colors.' }];

  it('chat returns the completion; stream: true yields the same text in deltas', async () => {
    const whole = await llmos.chat(MODEL, messages, SHORT);
    assert.ok(whole.text.length > 0);
    assert.equal(whole.usage.completion_tokens, 8);
    const deltas = await collect(llmos.chat(MODEL, messages, { ...SHORT, stream: true }));
    assert.ok(deltas.length > 1, JSON.stringify(deltas));
    assert.equal(deltas.join(''), whole.text);
  });

  it('generate continues a prompt, whole or streamed', async () => {
    const whole = await llmos.generate(MODEL, 'The capital of France is', SHORT);
    const streamed = (await collect(llmos.generate(MODEL, 'The capital of France is', { ...SHORT, stream: true }))).join('');
    assert.equal(streamed, whole.text);
    assert.match(whole.text, /Paris/);
  });

  it('leaving a stream early stops it; the server keeps serving', async () => {
    let n = 0;
    for await (const piece of llmos.chat(MODEL, messages, { max_tokens: 200, temperature: 0, stream: true })) {
      assert.equal(typeof piece, 'string');
      if (++n === 2) break;
    }
    assert.equal(n, 2);
    assert.ok((await llmos.chat(MODEL, messages, SHORT)).text.length > 0);
  });

  it('an aborted signal stops a stream with an AbortError', async () => {
    const ctl = new AbortController();
    const pieces = [];
    await assert.rejects(
      (async () => {
        for await (const piece of llmos.chat(MODEL, messages, { max_tokens: 200, stream: true, signal: ctl.signal })) {
          pieces.push(piece);
          ctl.abort();
        }
      })(),
      (e) => e.name === 'AbortError',
    );
    assert.equal(pieces.length, 1);
  });

  it('a bad request is an LLMOSError with status 400 and the server message', async () => {
    await assert.rejects(llmos.chat(MODEL, messages, { temperature: 'hot' }), (e) => {
      assert.ok(e instanceof LLMOSError && !(e instanceof NotFoundError));
      assert.equal(e.status, 400);
      assert.match(e.message, /temperature/);
      return true;
    });
  });

  it('an unknown model is a NotFoundError', async () => {
    await assert.rejects(llmos.chat('no-such-model', messages, SHORT), (e) => e instanceof NotFoundError && e.status === 404);
  });
});

describe('auth and connection errors', () => {
  it('a wrong key is an AuthError 401 naming the header to send', async () => {
    const bad = new LLMOS({ baseUrl: server.url, apiKey: 'wrong' });
    await assert.rejects(bad.models.list(), (e) => {
      assert.ok(e instanceof AuthError);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      assert.match(e.message, /Authorization: Bearer KEY/);
      return true;
    });
    await assert.rejects(collect(bad.chat(MODEL, [{ role: 'user', content: 'x' }], { stream: true })), AuthError);
  });

  it('no key is an AuthError too; health needs none', async () => {
    const anon = new LLMOS({ baseUrl: server.url });
    await assert.rejects(anon.runs.list(), AuthError);
    assert.equal((await anon.health()).status, 'ok');
  });

  it('an unreachable server is an LLMOSError with status 0 naming the URL', async () => {
    const gone = new LLMOS({ baseUrl: 'http://127.0.0.1:9/' });
    await assert.rejects(gone.models.list(), (e) => {
      assert.ok(e instanceof LLMOSError);
      assert.equal(e.status, 0);
      assert.equal(e.code, 'connection_error');
      assert.match(e.message, /127\.0\.0\.1:9/);
      return true;
    });
  });
});
