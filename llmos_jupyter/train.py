"""`python -m llmos_jupyter.train CONFIG.yaml`, alone or under torchrun.

    torchrun --nproc_per_node 2 -m llmos_jupyter.train config.yaml
    python -m llmos_jupyter.train config.yaml --resume RUN_ID

CONFIG is YAML with api.train's keywords: model, data, output, method, steps, batch_size,
seq_len, lr, val_data, text_field / prompt_field / response_field, device, and any
TrainConfig option (grad_accum, seed, lora_rank, ...). Under torchrun (WORLD_SIZE > 1)
every rank runs the same loop inside DistributedDataParallel (gloo on CPU, NCCL on GPU),
each on its own micro-batches of every step; rank 0 records the run, writes checkpoints
and installs the model. `batch_size` is per process: N processes with grad_accum A train
on what one process does with grad_accum N * A.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from llmos_jupyter.errors import ConfigError, LLMOSError
from llmos_jupyter.runtime.loss_plot import status_line
from llmos_jupyter.runtime.services import services
from llmos_jupyter.runtime.training import build_spec, execute_training, prepare

JOB_KEYS = ("model", "data", "output", "val_data", "text_field", "prompt_field",
            "response_field", "device", "method")


def load_config(path: str) -> dict[str, Any]:
    """The YAML job file as a dict; ConfigError when it is unreadable or lacks keys."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read training config {path!r}: {e}") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "data" not in cfg:
        raise ConfigError(f"{path}: a training config is a YAML mapping with at least "
                          "`model:` and `data:`")
    return cfg


def spec_from_config(services: Any, cfg: dict[str, Any], device: str) -> dict[str, Any]:
    """api.train's keywords (a dict) -> the recorded job spec."""
    job = {k: cfg[k] for k in JOB_KEYS if k in cfg}
    options = {k: v for k, v in cfg.items() if k not in JOB_KEYS}
    job.setdefault("output", f"{job['model']}-tuned")
    job["device"] = device
    return build_spec(services, job.pop("model"), job.pop("data"), job.pop("output"),
                      **job, **options)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 when training succeeded)."""
    import torch
    import torch.distributed as dist


    parser = argparse.ArgumentParser(prog="python -m llmos_jupyter.train")
    parser.add_argument("config", nargs="?", help="YAML job file")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    args = parser.parse_args(argv)
    if not args.config and not args.resume:
        parser.error("give a CONFIG file, or --resume RUN_ID")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    s = services()
    try:
        if args.resume:
            rec = s.runs.get(args.resume)
            spec = rec.spec
        else:
            cfg = load_config(args.config)
            spec = spec_from_config(s, cfg, cfg.get("device", "auto"))
        cuda = torch.cuda.is_available() and spec.get("device") in ("auto", "cuda")
        if cuda:
            torch.cuda.set_device(local_rank)
        spec = {**spec, "device": "cuda" if cuda else "cpu"}
        if world > 1:
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        # Every rank checks and prepares the same job, so a bad input fails on all of them.
        prepared = prepare(s, spec, check_output=not args.resume)
        run_id = [args.resume]
        if rank == 0 and not args.resume:
            rec = s.runs.create("train", spec, spec["base"], None, spec["data"], None, [],
                                spec["config"])
            s.runs.set_progress(rec.id, 0, prepared.config.steps)
            run_id = [rec.id]
        if world > 1:
            dist.broadcast_object_list(run_id, src=0)
        total = prepared.config.steps

        def report(m: dict[str, Any]) -> None:
            if rank == 0:
                print(status_line(m, total, f"run {run_id[0]}"), file=sys.stderr, flush=True)

        execute_training(s, run_id[0], prepared, report, resume=bool(args.resume),
                         rank=rank, world=world)
        if world > 1:
            dist.barrier()
        if rank == 0:
            rec = s.runs.get(run_id[0])
            print(f"run {rec.id}: {rec.status}" + (f" ({rec.error})" if rec.error else ""))
            return 0 if rec.status == "succeeded" else 1
        return 0
    except LLMOSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
