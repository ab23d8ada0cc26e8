"""The one public, in-process API of LLMOS. `import llmos` re-exports it.

Every interface (magics, CLI, widgets, server) calls these functions and nothing below
them. Models: pull / import_model / list_models / show / rm / cp / create / load / ps.
Data: `datasets`. Tasks: `tasks`, `run`. History: `runs`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos_jupyter.errors import ConfigError, LLMOSError
from llmos_jupyter.runtime.cache import MODELS
from llmos_jupyter.runtime.current import get_current, set_current
from llmos_jupyter.runtime.evaluation import evaluate_loss, evaluate_task
from llmos_jupyter.runtime.loss_plot import metrics_callback
from llmos_jupyter.runtime.namespaces import DatasetsAPI, RunsAPI, TasksAPI
from llmos_jupyter.runtime.progress import count_callback, count_progress, progress_callback
from llmos_jupyter.runtime.prompts import fill_prompt
from llmos_jupyter.runtime.services import services
from llmos_jupyter.runtime.task_runs import RunHandle, TaskResult, start_run
from llmos_jupyter.runtime.training import build_spec, check_float_weights, start_training
from llmos_jupyter.store.sources import DEFAULT_MODEL, SOURCES

__all__ = [
    "pull", "pullable", "import_model", "list_models", "show", "rm", "cp", "create", "load",
    "unload", "ps", "current_model", "generate", "chat", "run", "datasets", "tasks", "runs",
    "train", "evaluate", "eval_model", "current_model_or_none", "fill_prompt",
    "LoadedModel", "RunHandle", "TaskResult", "LLMOSError",
]

Progress = Callable[[int, int, str], None]

# LoadedModel's module imports torch (seconds). The catalog, data, task and run-record
# functions here must not pay for it (`llmos list` answers in a fraction of a second), so
# the name is resolved on first use: `api.LoadedModel` through __getattr__ below, and
# inside the functions that run a model.
if TYPE_CHECKING:
    from llmos_jupyter.runtime.loaded_model import LoadedModel


def __getattr__(name: str) -> Any:
    if name == "LoadedModel":
        # torch, jinja2: imported on first use, not with this module
        from llmos_jupyter.runtime.loaded_model import LoadedModel

        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ models
def pull(name: str, progress: bool | Progress = True) -> dict[str, Any]:
    """Download a model into the store (checksum-verified, converted once). Returns its record.

    progress: True for a progress bar (a widget in notebooks, text in terminals), False for
    none, or a callback (done, total, stage). Raises NotFoundError for unknown names.
    """
    with progress_callback(progress, f"pull {name}") as cb:
        return services().models.pull(name, progress=cb).to_dict()


def pullable() -> list[dict[str, Any]]:
    """Models `pull` can fetch: name, description, license, size in bytes."""
    return [{"name": s.name, "description": s.description, "license": s.license,
             "size_bytes": s.size} for s in SOURCES.values()]


def import_model(name: str, path: str | Path) -> dict[str, Any]:
    """Import a local GGUF file, Hugging Face directory or native directory under `name`."""
    return services().models.import_model(name, Path(path)).to_dict()


def list_models() -> list[dict[str, Any]]:
    """Every model and preset in the store, as dicts with stable keys."""
    return [r.to_dict() for r in services().models.list()]


def show(name: str) -> dict[str, Any]:
    """Architecture, parameters, quantization, context, size, tokenizer, template, source."""
    return services().models.show(name)


def rm(name: str, cascade: bool = False) -> list[str]:
    """Remove a model or preset from the store (and from memory); returns the names removed.

    A model that presets are based on is refused (LLMOSError naming them) unless
    `cascade`, which removes those presets too.
    """
    MODELS.unload(name)
    removed = services().models.remove(name, cascade=cascade)
    for other in removed:
        MODELS.unload(other)
    return removed


def cp(src: str, dst: str) -> dict[str, Any]:
    """Copy a model or preset under a new name."""
    return services().models.copy(src, dst).to_dict()


def create(
    name: str, base: str, system: str | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A preset: `base`'s weights with its own system prompt and sampling defaults."""
    return services().models.create_preset(name, base, system=system, params=params).to_dict()


def _auto_pull(name: str) -> None:
    """Load implies pull for a pullable model not yet in the store (as `ollama run` does)."""
    s = services()
    if name in SOURCES and name not in {r.name for r in s.models.list()}:
        pull(name)


def load(name: str | None = None, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a model (or preset) into memory and make it the current model.

    device: "cpu", "cuda" or "auto" (CUDA when present). dtype: "float32", "bfloat16",
    "float16", "int8", "int4", "ggml" (GGML blocks as stored, CPU only) or "auto" (the
    fastest mode on that device whose greedy outputs equal float32's: GGML blocks on a
    CPU when the model has them, else float32; bfloat16 on CUDA). Raises NotFoundError,
    ConfigError, CheckpointError.
    """
    name = name or DEFAULT_MODEL
    _auto_pull(name)
    model = MODELS.get(services(), name, device=device, dtype=dtype)
    set_current(model)
    return model


def unload(name: str | None = None) -> list[str]:
    """Free a loaded model (or all of them); returns the names unloaded."""
    cur = get_current()
    if cur is not None and (name is None or cur.name == name):
        set_current(None)
    return MODELS.unload(name)


def ps() -> list[dict[str, Any]]:
    """Models loaded in this process."""
    return MODELS.list()


def current_model() -> LoadedModel:
    """The current model (the last one loaded), loading the default model if none is."""
    return get_current() or load()


def current_model_or_none() -> LoadedModel | None:
    """The current model if one is loaded, else None; loads nothing."""
    return get_current()


def _model(model: str | LoadedModel | None) -> LoadedModel:
    # torch, jinja2: imported on first use, not with this module
    from llmos_jupyter.runtime.loaded_model import LoadedModel

    if isinstance(model, LoadedModel):
        return model
    if model is None:
        return current_model()
    if not isinstance(model, str):
        raise ConfigError(f"model must be a name or a loaded model, got {type(model).__name__}")
    return load(model)


def generate(prompt: str, model: str | LoadedModel | None = None, **params: Any):
    """Continue `prompt` with `model` (default: the current model). See LoadedModel.generate."""
    return _model(model).generate(prompt, **params)


def chat(messages: list[dict[str, Any]], model: str | LoadedModel | None = None, **params: Any):
    """Answer a conversation with `model` (default: the current model)."""
    return _model(model).chat(messages, **params)


# ------------------------------------------------------------------ tasks
def run(
    task: str,
    *,
    model: str | LoadedModel | None = None,
    data: str | None = None,
    map: dict[str, str] | None = None,  # noqa: A002 - the documented keyword
    limit: int | None = None,
    params: dict[str, Any] | None = None,
    background: bool | None = None,
    progress: bool | Callable[[int, int], None] = False,
    **inputs: Any,
) -> TaskResult | RunHandle:
    """Run a task, recorded as a run in the store.

    With inputs (`llmos.run("summarize", text="...")`) returns a TaskResult (`.output`,
    `.run_id`). With `data=` (a dataset name, `map` from task inputs to its columns)
    returns a RunHandle running in the background (`.wait()`, `.progress`, `.cancel()`,
    `.results()`, `.to_pandas()`); background=False runs it in the calling thread.
    progress=True shows a live bar of items done (a widget in notebooks), or pass a
    (done, total) callback.
    """
    with count_progress(progress if data else None, f"{task} on {data}",
                        foreground=background is False) as on_progress:
        return start_run(
            services(), task, model=model, resolve_model=_model, data=data, mapping=map,
            limit=limit, params=params, background=background, inputs=inputs,
            on_progress=on_progress,
        )


# ------------------------------------------------------------------ training
def train(
    model: str | LoadedModel,
    data: str,
    output: str | None = None,
    *,
    method: str = "lora",
    steps: int = 100,
    batch_size: int = 4,
    seq_len: int = 512,
    lr: float = 1e-4,
    val_data: str | None = None,
    text_field: str | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
    device: str = "auto",
    background: bool = True,
    progress: bool | Callable[[dict[str, Any]], None] = False,
    **options: Any,
):
    """Fine-tune `model` on dataset `data` into a new catalog model `output`.

    method "lora" (rank/alpha/targets: lora_rank=8, lora_alpha=16, lora_targets=
    ["q_proj", "v_proj"] or "all-linear") or "full". Data kinds: prompt/response fields
    (instruction; loss on the answers), messages (chat), or one text column (packed
    chunks); text_field / prompt_field / response_field override. More options:
    warmup_steps, min_lr_ratio, weight_decay, max_grad_norm, grad_accum, seed,
    checkpoint_every, eval_every, gradient_checkpointing (see engine.training.TrainConfig).
    Returns a TrainHandle (`.wait()`, `.metrics`, `.progress`, `.cancel()`, `.model`);
    background=False trains in the calling thread. progress=True shows a live loss plot
    in a notebook (a line per step in a terminal), or pass a callback taking each step's
    metrics. Raises (before any step) NotFoundError, ConfigError or DataError.
    """
    # torch, jinja2: imported on first use, not with this module
    from llmos_jupyter.runtime.loaded_model import LoadedModel

    if isinstance(model, LoadedModel):
        check_float_weights(model)
        model = model.name
    if not isinstance(model, str):
        raise ConfigError(f"model must be a name or a loaded model, got {type(model).__name__}")
    _auto_pull(model)
    spec = build_spec(
        services(), model, data, output or f"{model}-tuned", method=method, val_data=val_data,
        text_field=text_field, prompt_field=prompt_field, response_field=response_field,
        device=device, steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, **options)
    on_metrics = metrics_callback(progress, spec["config"]["steps"], f"train {spec['output']}")
    return start_training(services(), spec, background=background, on_metrics=on_metrics)


def evaluate(
    task: str,
    *,
    data: str,
    label: str,
    model: str | LoadedModel | None = None,
    map: dict[str, str] | None = None,  # noqa: A002 - the documented keyword
    limit: int | None = None,
    params: dict[str, Any] | None = None,
    progress: bool | Callable[[int, int], None] = False,
):
    """Accuracy of `task` on dataset `data` whose column `label` holds the right answers.

    Runs the task over every row (a recorded run) and compares outputs with labels
    (exact match, ignoring case, spacing and outer punctuation). Returns an EvalResult:
    `.accuracy`, `.per_label` (label, n, correct, accuracy), `.failures`, `.to_dict()`.
    """

    on_progress = count_callback(progress, f"eval {task} on {data}")
    return evaluate_task(services(), task, data, label, model=model, resolve_model=_model,
                         mapping=map, limit=limit, params=params, on_progress=on_progress)


def eval_model(
    model: str | LoadedModel | None = None,
    *,
    data: str,
    text_field: str | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
    seq_len: int | None = None,
    batch_size: int = 4,
) -> dict[str, Any]:
    """Mean next-token loss and perplexity of `model` on dataset `data` (the training data
    kinds and masking: instruction data counts answer tokens only)."""
    return evaluate_loss(_model(model), data, services(), text_field=text_field,
                         prompt_field=prompt_field, response_field=response_field,
                         seq_len=seq_len, batch_size=batch_size)


datasets = DatasetsAPI(services, _model)
tasks = TasksAPI(services)
runs = RunsAPI(services, _model)
