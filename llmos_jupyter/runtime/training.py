"""Training jobs as runs in the catalog: start, progress, stop, resume, and the new model.

A training run is a row of the runs table with task "train" (its `kind`): `spec` holds
the job (base model, dataset, output name, data fields, TrainConfig), `done`/`total` count
optimizer steps, and runs/<id>/ holds `metrics.jsonl` (one line per step: loss, val loss,
tokens/s, ETA) and `checkpoint.pt`. Every check (names, fields, lengths, learning rate,
float weights) runs before the first step, so bad input fails fast with nothing recorded.

Stopping: `cancel()` asks the loop to stop ('cancelled', final); Ctrl-C (or
`TrainHandle.wait()` interrupted in a notebook) stops it as 'interrupted' after writing a
checkpoint; a killed process leaves the run 'running' until RunStore sees its pid gone and
marks it 'interrupted'. `resume_training` continues an interrupted run from its last
checkpoint, exactly (see engine/training.py).

The result is a model in the catalog in the native format with LoRA merged, whose
config.json metadata carries its lineage (base, dataset and hash, steps, settings, final
losses), shown by `llmos show NAME`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import ConfigError, LLMOSError
from llmos_jupyter.runtime.background import THREADS, run_or_spawn
from llmos_jupyter.runtime.task_runs import RunHandle

TRAIN_TASK = "train"
CHECKPOINT, METRICS = "checkpoint.pt", "metrics.jsonl"
_stop_events: dict[str, threading.Event] = {}


class TrainHandle(RunHandle):
    """A training run: `.wait()`, `.metrics`, `.progress`, `.cancel()`, `.model`."""

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One dict per finished step: step, loss, val_loss (when measured), lr,
        tokens_per_s, elapsed_s, eta_s."""
        path = self._services.runs.run_dir(self.id) / METRICS
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut by a kill mid-write
                break
        return rows

    @property
    def model(self) -> str:
        """Name of the model this run writes into the catalog."""
        return self.record().spec["output"]

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> TrainHandle:
        """Block until the run ends. Ctrl-C / a kernel interrupt while waiting stops the
        run at the next step boundary (checkpoint kept, status 'interrupted')."""
        try:
            thread = THREADS.get(self.id)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.record().is_final and self.record().status != "interrupted":
                if thread is not None and not thread.is_alive():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            self.stop()
            raise
        return self

    def stop(self) -> TrainHandle:
        """Stop a run of this process after its current step, keeping a checkpoint."""
        event = _stop_events.get(self.id)
        if event is not None:
            event.set()
            thread = THREADS.get(self.id)
            if thread is not None:
                thread.join()
        return self

    def __repr__(self) -> str:
        r = self.record()
        out = r.spec.get("output")
        return f"<TrainRun {r.id} {r.model} -> {out} {r.status} {r.done}/{r.total}>"


@dataclass
class Prepared:
    """A job resolved and checked: model in float32, tokenizer, examples, config."""

    spec: dict[str, Any]
    model: Any
    loaded: Any
    examples: list
    val_examples: list
    config: Any


def build_spec(
    services: Any, model: str, data: str, output: str, *, method: str = "lora",
    val_data: str | None = None, text_field: str | None = None,
    prompt_field: str | None = None, response_field: str | None = None,
    device: str = "auto", **options: Any,
) -> dict[str, Any]:
    """The job as a JSON-able dict (what a run records and a resume rebuilds from)."""
    from llmos_jupyter.engine.training import TrainConfig

    config = TrainConfig.from_dict({"method": method, **options}).validate()
    return {"kind": TRAIN_TASK, "base": model, "data": data, "val_data": val_data,
            "output": output, "device": device,
            "fields": {"text_field": text_field, "prompt_field": prompt_field,
                       "response_field": response_field},
            "config": config.to_dict()}


def prepare(services: Any, spec: dict[str, Any], check_output: bool = True) -> Prepared:
    """Load the base in float32 and turn the data into examples, checking everything.

    Raises NotFoundError (model, dataset), ConfigError (settings, output name taken, a
    model without float weights), DataError (fields, empty data, rows too long).
    """
    from llmos_jupyter.engine.train_data import build_examples, detect_fields
    from llmos_jupyter.engine.training import TrainConfig
    from llmos_jupyter.formats.native import read_native
    from llmos_jupyter.model.loading import build_model
    from llmos_jupyter.runtime.loaded_model import LoadedModel
    from llmos_jupyter.store.home import check_name
    from llmos_jupyter.tokenizer import Tokenizer

    config = TrainConfig.from_dict(spec["config"]).validate()
    output = spec["output"]
    check_name("model", output)
    if check_output and output in services.models.names():
        raise ConfigError(f"a model named {output!r} already exists; pick another output "
                          f"name or `llmos rm {output}`")
    record, system, _ = services.models.resolve(spec["base"])
    ckpt = read_native(services.models.model_dir(record.name))
    if ckpt.tokenizer is None:
        raise ConfigError(f"model {record.name!r} has no tokenizer; it cannot be trained on text")
    if config.seq_len > ckpt.config.max_seq_len:
        raise ConfigError(f"seq_len {config.seq_len} exceeds {record.name}'s context of "
                          f"{ckpt.config.max_seq_len} tokens; lower seq_len")
    tokenizer = Tokenizer.from_spec(ckpt.tokenizer)
    # Quantized (GGUF) weights are dequantized: LoRA trains over float32 copies.
    model = build_model(ckpt, device=spec.get("device", "auto"), dtype="float32")
    del ckpt
    loaded = LoadedModel(record.name, model, tokenizer, mode="float32", system=system)

    def examples_of(name: str) -> list:
        rec = services.datasets.get(name)
        fields = detect_fields(name, rec.columns, **spec["fields"])
        return build_examples(
            name, services.datasets.rows(name), fields,
            lambda text: tokenizer.encode(text, allow_special=False),
            loaded.encode_chat, tokenizer.eos_id, config.seq_len)

    examples = examples_of(spec["data"])
    val = examples_of(spec["val_data"]) if spec.get("val_data") else []
    return Prepared(spec, model, loaded, examples, val, config)


def check_float_weights(loaded: Any) -> None:
    """ConfigError when a loaded model holds no float weights to train (quantized mode)."""
    mode = getattr(loaded, "mode", "float32")
    if mode not in ("float32", "bfloat16", "float16"):
        raise ConfigError(
            f"model {loaded.name!r} is loaded in weight mode {mode!r}, which has no float "
            "weights to train; pass the model's name (training loads it in float32)"
        )


def start_training(
    services: Any, spec: dict[str, Any], background: bool = True,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> TrainHandle:
    """Check and prepare the job, record a queued run, then train (in a thread unless
    background is False). Every error about the input is raised here, before a step."""
    prepared = prepare(services, spec)
    rec = services.runs.create(TRAIN_TASK, spec, spec["base"], None, spec["data"], None, [],
                               spec["config"])
    services.runs.set_progress(rec.id, 0, prepared.config.steps)
    return _launch(services, rec.id, prepared, background, on_metrics, resume=False)


def resume_training(
    services: Any, run_id: str, background: bool = True,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> TrainHandle:
    """Continue an interrupted training run from its last checkpoint."""
    rec = services.runs.get(run_id)
    if rec.status not in ("interrupted", "queued"):
        raise LLMOSError(f"run {rec.id} is {rec.status}; only interrupted or queued runs "
                         "can be resumed")
    prepared = prepare(services, rec.spec)
    return _launch(services, rec.id, prepared, background, on_metrics, resume=True)


def _launch(services: Any, run_id: str, prepared: Prepared, background: bool,
            on_metrics: Callable[[dict[str, Any]], None] | None, resume: bool) -> TrainHandle:
    event = threading.Event()
    _stop_events[run_id] = event
    args = (services, run_id, prepared, on_metrics, resume, event)
    run_or_spawn(run_id, execute_training, args, background, f"llmos-train-{run_id}")
    return TrainHandle(services, run_id)


def execute_training(
    services: Any, run_id: str, prepared: Prepared,
    on_metrics: Callable[[dict[str, Any]], None] | None = None, resume: bool = False,
    stop_event: threading.Event | None = None, rank: int = 0, world: int = 1,
) -> None:
    """Train a recorded run to the end (rank 0 records; every rank trains)."""
    from llmos_jupyter.engine.training import Stopped, Trainer

    runs = services.runs
    lead = rank == 0
    run_dir = runs.run_dir(run_id) if lead else None
    ckpt_path = run_dir / CHECKPOINT if lead else None
    if lead:
        runs.start(run_id, os.getpid())
    try:
        trainer = Trainer(prepared.model, prepared.examples, prepared.config,
                          pad_id=_pad_id(prepared.loaded.tokenizer),
                          val_examples=prepared.val_examples, rank=rank, world=world)
        path = runs.run_dir(run_id) / CHECKPOINT
        if resume and path.is_file():
            trainer.load_checkpoint(path)
        if lead:
            _rewrite_metrics(run_dir / METRICS, trainer.metrics)
        last_poll = [0.0, False]

        def should_stop() -> bool:
            if stop_event is not None and stop_event.is_set():
                return True
            now = time.monotonic()
            if lead and now - last_poll[0] > 0.5:
                last_poll[0], last_poll[1] = now, runs.is_cancel_requested(run_id)
            return last_poll[1]

        def record(m: dict[str, Any]) -> None:
            if lead:
                with open(run_dir / METRICS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(m) + "\n")
                runs.set_progress(run_id, m["step"])
            if on_metrics is not None:
                on_metrics(m)

        try:
            metrics = trainer.fit(ckpt_path, record, should_stop if world == 1 else None)
        except Stopped as s:
            if lead:
                if s.reason == "cancelled" and runs.is_cancel_requested(run_id):
                    runs.finish(run_id, "cancelled", f"cancelled at step {s.step}")
                else:
                    runs.mark_stopped(run_id, f"stopped at step {s.step}; resume it with "
                                              f"`llmos runs resume {run_id}`")
            return
        if lead:
            _install_model(services, run_id, prepared, trainer, metrics)
            runs.finish(run_id, "succeeded")
    except BaseException as e:
        if lead and not runs.get(run_id).is_final:
            runs.finish(run_id, "failed", f"{type(e).__name__}: {e}")
        raise


def _pad_id(tokenizer: Any) -> int:
    for tok in (tokenizer.pad_id, tokenizer.eos_id, 0):
        if tok is not None:
            return tok
    return 0


def _rewrite_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    """metrics.jsonl as of the checkpoint (steps after it are redone on resume)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(m) + "\n" for m in metrics), encoding="utf-8")
    os.replace(tmp, path)


def lineage(services: Any, run_id: str, spec: dict[str, Any],
            metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a trained model came from: base, data and hashes, settings, final losses."""
    base, _, _ = services.models.resolve(spec["base"])
    data = services.datasets.get(spec["data"])
    val_losses = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
    out = {
        "run_id": run_id, "base": spec["base"], "base_sha256": base.sha256,
        "dataset": data.name, "dataset_sha256": data.sha256, "dataset_rows": data.rows,
        "method": spec["config"]["method"], "steps": len(metrics),
        "hyperparameters": spec["config"],
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
    }
    if spec.get("val_data"):
        val = services.datasets.get(spec["val_data"])
        out.update(val_dataset=val.name, val_dataset_sha256=val.sha256)
    return out


def _install_model(services: Any, run_id: str, prepared: Prepared, trainer: Any,
                   metrics: list[dict[str, Any]]) -> None:
    """Merge LoRA, write the native files, and add the model to the catalog."""
    import shutil

    from llmos_jupyter.core.checkpoint import Checkpoint
    from llmos_jupyter.formats.native import write_native

    model = trainer.merged_model()
    tensors = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    meta = {"lineage": lineage(services, run_id, prepared.spec, metrics),
            "architecture": model.config.arch}
    staged = services.runs.run_dir(run_id) / "model"
    write_native(Checkpoint(model.config, tensors, prepared.loaded.tokenizer.spec, meta), staged)
    try:
        services.models.import_model(prepared.spec["output"], staged, source=f"train:{run_id}")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
