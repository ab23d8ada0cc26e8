/**
 * Server-sent events over fetch: the `data:` payloads of a streamed response, one at a
 * time, as the server flushes them. Leaving the loop early cancels the body, which closes
 * the connection, so the server frees the request's resources at once.
 */

/** Each event's data (multi-line `data:` fields joined with "\n"), in order. */
export async function* sseData(response: Response): AsyncGenerator<string> {
  if (!response.body) throw new Error('the response has no body to stream');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: RegExpExecArray | null;
      while ((end = EVENT_END.exec(buffer)) !== null) {
        const data = eventData(buffer.slice(0, end.index));
        buffer = buffer.slice(end.index + end[0].length);
        if (data !== null) yield data;
      }
    }
    buffer += decoder.decode();
    const data = eventData(buffer);
    if (data !== null) yield data;
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/** The blank line that ends an event. */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

/** The data of one event's lines, or null when it has no `data:` field (a comment). */
function eventData(block: string): string | null {
  const lines: string[] = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (line.startsWith('data:')) lines.push(line.slice(line.startsWith('data: ') ? 6 : 5));
  }
  return lines.length ? lines.join('\n') : null;
}
