"""A seeded GGUF fuzzer: 600 mutations of a small model (and 12 of the default model)
through import, load and generate.

The base is a tiny llama GGUF laid out like the default model (Q8_0 embedding, Q4_1
weights, F32 norms, tied output, byte-level BPE with merges and a chat template), so a
case costs milliseconds rather than the seconds of the 98 MB model. harness.py says what
each outcome means and which are allowed; every case must end in an allowed one, within
its time bound, with nothing of a refused import left in the store. Outcome counts are
printed at the end of the run. LLMOS_FUZZ_SEED picks another seed (default 13).
"""

from __future__ import annotations

import os

import pytest
import torch

from llmos_jupyter.model import ggml_linear
from tests.checkpoint_factory import write_tiny_gguf
from tests.fuzz.harness import (
    ALLOWED,
    SUMMARY,
    attempt,
    classify,
    leftovers,
    run_case,
    set_home,
)
from tests.fuzz.mutations import KINDS, Mutator

SEED = int(os.environ.get("LLMOS_FUZZ_SEED", "13"))
CASES = {"random_bytes": 150, "header_bytes": 150, "header_fields": 100, "tensor_table": 100,
         "token_strings": 100}
# Generous: a case takes well under a second; only a real hang comes near this.
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    """(base bytes, baseline result, store home, work dir) shared by the kinds."""
    root = tmp_path_factory.mktemp("fuzz")
    base = write_tiny_gguf(root / "base.gguf", qtype="Q4_1", seed=SEED,
                           qtype_overrides={"token_embd.weight": "Q8_0"},
                           tie_embeddings=True).read_bytes()
    home = root / "home"
    old, threads = os.environ.get("LLMOS_HOME"), torch.get_num_threads()
    set_home(home)
    # The unmutated model runs here, in this process: it compiles/loads the native kernel
    # and imports everything a case uses, so forked children start warm (a case then
    # costs tens of milliseconds, not the few hundred of first imports). One thread: a
    # child forked after an OpenMP team was started could deadlock.
    torch.set_num_threads(1)
    assert ggml_linear.available()
    baseline = attempt(base, root, "baseline")
    assert baseline["outcome"] == "accepted", baseline
    yield base, baseline, home, root
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("LLMOS_HOME", None)
    else:
        os.environ["LLMOS_HOME"] = old


def test_kinds_cover_the_plan():
    assert set(CASES) == set(KINDS) and sum(CASES.values()) >= 500
    assert set(DEFAULT_MODEL_CASES) <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_gguf_mutations(fuzz, kind):
    base, baseline, home, workdir = fuzz
    mutator = Mutator(base, seed=SEED * 1000 + KINDS.index(kind))
    counts: dict[str, int] = {}
    failures = []
    for i, mutation in enumerate(mutator.cases(kind, CASES[kind])):
        name = f"{kind.replace('_', '-')}-{i}"
        result = run_case(mutation.apply(base), workdir, name, TIMEOUT_S)
        outcome = classify(result, baseline, mutation.only_before(mutator.data_start))
        left = leftovers(home, name)
        if left:
            outcome = "leftovers"
            result["error"] = f"left {left}"
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome not in ALLOWED:
            failures.append(f"case {i} ({mutation.what}): {outcome}: {result.get('error')}")
    SUMMARY[kind] = counts
    assert not failures, f"{len(failures)} of {CASES[kind]} cases failed:\n" + "\n".join(
        failures[:10])


# Tensor-table edits only: nearly all are refused after reading the header, while each
# accepted case costs a whole import of the 98 MB file (seconds).
DEFAULT_MODEL_CASES = {"tensor_table": 12}


def test_default_model_mutations(fuzz, smollm2_gguf):
    """A few cases on the real 98 MB default model (the rest use the tiny one for speed):
    its 272 tensors of three types and real vocabulary give other layouts to get wrong."""
    _, _, home, workdir = fuzz
    base = smollm2_gguf.read_bytes()
    baseline: dict = {}
    mutator = Mutator(base, seed=SEED * 1000 + 99)
    counts: dict[str, int] = {}
    failures = []
    mutations = [m for kind, n in DEFAULT_MODEL_CASES.items() for m in mutator.cases(kind, n)]
    for i, mutation in enumerate(mutations):
        name = f"default-{i}"
        result = run_case(mutation.apply(base), workdir, name, TIMEOUT_S)
        if result["outcome"] == "accepted" and not baseline:  # needed only to compare
            baseline.update(attempt(base, workdir, "default-baseline"))
            assert baseline["outcome"] == "accepted", baseline
        outcome = classify(result, baseline, mutation.only_before(mutator.data_start))
        if leftovers(home, name):
            outcome = "leftovers"
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome not in ALLOWED:
            failures.append(f"case {i} ({mutation.what}): {outcome}: {result.get('error')}")
    SUMMARY["default_model"] = counts
    assert not failures, "\n".join(failures)
