/** `client.datasets`: the server's datasets (`llmos data ...`). */

import { Transport, seg } from './transport.js';
import type { DatasetFormat, DatasetRecord, DatasetRow, RequestOptions } from './types.js';

/** What `upload` accepts: a file (Blob/File), text, or bytes. */
export type UploadData = Blob | string | Uint8Array | ArrayBuffer;

/** Datasets of the server's store. */
export class Datasets {
  constructor(private readonly http: Transport) {}

  /** Every dataset: name, format, rows, columns. */
  list(opts: RequestOptions = {}): Promise<DatasetRow[]> {
    return this.http.json('api/datasets', opts);
  }

  /** One dataset with its first `head` rows (default 5). */
  show(name: string, opts: RequestOptions & { head?: number } = {}): Promise<DatasetRecord> {
    return this.http.json(`api/datasets/${seg(name)}`, {
      query: { head: opts.head },
      signal: opts.signal,
    });
  }

  /**
   * Add a dataset from a file's contents. `format` says how to read it; `replace`
   * overwrites a dataset of that name (otherwise the server refuses with 409).
   *
   *     await client.datasets.upload('reviews', '{"text": "Great"}\n', { format: 'jsonl' });
   */
  upload(
    name: string,
    data: UploadData,
    opts: RequestOptions & { format: DatasetFormat; replace?: boolean },
  ): Promise<DatasetRecord> {
    if (!opts || !opts.format) {
      throw new TypeError(
        "datasets.upload needs the data's format: { format: 'jsonl' | 'json' | 'csv' | 'tsv' | 'txt' | 'parquet' }",
      );
    }
    return this.http.json(`api/datasets/${seg(name)}`, {
      method: 'POST',
      query: { format: opts.format, replace: opts.replace ? 'true' : undefined },
      body: data as BodyInit,
      headers: { 'Content-Type': 'application/octet-stream' },
      signal: opts.signal,
    });
  }

  /** Per-column statistics; with `model`, token counts by that model's tokenizer. */
  stats(name: string, opts: RequestOptions & { model?: string } = {}): Promise<Record<string, unknown>> {
    return this.http.json(`api/datasets/${seg(name)}/stats`, {
      query: { model: opts.model },
      signal: opts.signal,
    });
  }

  /**
   * The dataset's rows as a file in `format` (default jsonl), as a Blob: save it, or
   * read it with `await blob.text()`.
   */
  export(name: string, opts: RequestOptions & { format?: DatasetFormat } = {}): Promise<Blob> {
    return this.http.blob(`api/datasets/${seg(name)}/export`, {
      query: { format: opts.format },
      signal: opts.signal,
    });
  }

  /** Remove a dataset. */
  rm(name: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.http.json(`api/datasets/${seg(name)}`, { method: 'DELETE', signal: opts.signal });
  }
}
