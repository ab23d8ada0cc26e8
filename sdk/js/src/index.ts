/**
 * @llmos/sdk: a TypeScript client for LLMOS servers (`llmos serve`, or the Jupyter
 * server extension under `{base_url}llmos/`). No dependencies beyond `fetch`.
 */

export { LLMOS, type LLMOSOptions, type GenerationOptions } from './client.js';
export { Models } from './models.js';
export { Datasets, type UploadData } from './datasets.js';
export { Tasks, type TaskRunOptions } from './tasks.js';
export { Runs } from './runs.js';
export { jupyterOptions, type JupyterSettings } from './jupyter.js';
export { AuthError, LLMOSError, NotFoundError, RateLimitError, type LLMOSErrorInit } from './errors.js';
export type { FetchLike } from './transport.js';
export * from './types.js';
