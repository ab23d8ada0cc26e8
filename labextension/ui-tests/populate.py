"""Fill a store for the UI tests: `python populate.py N_RUNS N_DATASETS` with LLMOS_HOME set.

Adds a small `reviews` dataset the tests run tasks over, a larger `reviews-long` one a
run can be cancelled in, N_DATASETS more datasets and N_RUNS finished runs recorded
through the run store (as a run over a dataset records them; no model is run here), so the
panel's first paint is measured over a store of realistic size.
"""

from __future__ import annotations

import sys

from llmos_jupyter import api
from llmos_jupyter.runtime.services import services

REVIEWS = [
    "The battery lasts two days and the screen is bright.",
    "Stopped working after a week; support never answered.",
    "Comfortable, light, and the sound is better than expected.",
    "Shipping took a month and the box arrived crushed.",
]


def main(n_runs: int, n_datasets: int) -> None:
    """Add the datasets and the recorded runs."""
    api.datasets.add("reviews", [{"text": t} for t in REVIEWS])
    api.datasets.add("reviews-long", [{"text": f"{REVIEWS[i % 4]} ({i})"} for i in range(40)])
    for i in range(n_datasets):
        api.datasets.add(f"notes-{i:03d}", [{"text": f"note {i}.{j}", "id": j} for j in range(5)])
    runs = services().runs
    spec = {"name": "summarize", "inputs": ["text"], "prompt": "{text}"}
    for i in range(n_runs):
        rec = runs.create("summarize", spec, "smollm2-135m-instruct", None, f"notes-{i % max(1, n_datasets):03d}",
                          {"text": "text"}, [{"text": f"note {i}.{j}"} for j in range(3)])
        runs.start(rec.id)
        for j in range(3):
            runs.record_item(rec.id, j, f"summary {i}.{j}", tokens=5, seconds=0.1, prompt_tokens=12)
        runs.finish(rec.id, "succeeded")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
