"""GET /health (no auth: load balancers and `llmos serve` scripts poll it) and
GET /metrics (Prometheus text: requests, tokens, queue depth, batch occupancy, latency
histograms, per served model)."""

from __future__ import annotations

import bisect

from llmos_jupyter.runtime.scheduler import Scheduler
from llmos_jupyter.server.base import LLMOSHandler

# Histogram bucket bounds in seconds: time to first token, and between tokens.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class HealthHandler(LLMOSHandler):
    """GET /health: {"status": "ok", "models": [served model names]}."""

    public = True  # the one route that answers without credentials

    async def get(self) -> None:
        self.send_json({"status": "ok", "models": sorted(self.serving.loaded())})


class MetricsHandler(LLMOSHandler):
    """GET /metrics in the Prometheus text format."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(metrics_text(self.serving.loaded()))


def metrics_text(schedulers: dict[str, Scheduler]) -> str:
    """The exposition text for these schedulers (labels: model)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP llmos_{name} {help_}")
        lines.append(f"# TYPE llmos_{name} {kind}")

    counters = [
        ("requests_total", "requests admitted", lambda s: s.stats.requests),
        ("requests_rejected_total", "requests refused with 429", lambda s: s.stats.rejected),
        ("requests_cancelled_total", "requests whose client left before the end",
         lambda s: s.stats.cancelled),
        ("prompt_tokens_total", "prompt tokens prefilled", lambda s: s.stats.prompt_tokens),
        ("completion_tokens_total", "tokens generated", lambda s: s.stats.completion_tokens),
        ("decode_steps_total", "batched decode steps", lambda s: s.stats.steps),
    ]
    for name, help_, get in counters:
        family(name, "counter", help_)
        lines += [f'llmos_{name}{{model="{m}"}} {get(s)}' for m, s in schedulers.items()]
    family("queue_depth", "gauge", "requests admitted and not finished")
    lines += [f'llmos_queue_depth{{model="{m}"}} {s.load}' for m, s in schedulers.items()]
    family("batch_occupancy", "gauge", "mean rows per decode step")
    lines += [f'llmos_batch_occupancy{{model="{m}"}} '
              f"{s.stats.rows_stepped / s.stats.steps if s.stats.steps else 0.0:.3f}"
              for m, s in schedulers.items()]
    for name, help_, bounds, get in (
        ("time_to_first_token_seconds", "time from request to its first text",
         TTFT_BUCKETS, lambda s: s.stats.ttft_s),
        ("inter_token_latency_seconds", "time between a request's text pieces",
         ITL_BUCKETS, lambda s: s.stats.inter_token_s),
    ):
        family(name, "histogram", help_ + " (recent samples)")
        for m, s in schedulers.items():
            samples = sorted(get(s))
            for le in bounds:
                lines.append(f'llmos_{name}_bucket{{model="{m}",le="{le}"}} '
                             f"{bisect.bisect_right(samples, le)}")
            lines.append(f'llmos_{name}_bucket{{model="{m}",le="+Inf"}} {len(samples)}')
            lines.append(f'llmos_{name}_sum{{model="{m}"}} {sum(samples):.6f}')
            lines.append(f'llmos_{name}_count{{model="{m}"}} {len(samples)}')
    return "\n".join(lines) + "\n"
