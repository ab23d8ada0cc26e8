"""sample(): greedy, top-k/top-p/min-p filters, repetition penalty, seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.engine import GenerationParams, make_generators, sample
from llmos_jupyter.engine.sampling import apply_repetition_penalty, seen_mask

V = 1000


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(4, V, generator=torch.Generator().manual_seed(0)) * 3


def draws(logits, params, n=200, seed=0) -> torch.Tensor:
    """n samples per row as [n, B], from per-row generators."""
    gens = make_generators(seed, logits.shape[0])
    return torch.stack([sample(logits, params, gens) for _ in range(n)])


def test_greedy_is_argmax(logits):
    out = sample(logits, GenerationParams(temperature=0))
    assert out.dtype == torch.long and out.shape == (4,)
    assert torch.equal(out, logits.argmax(-1))


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(temperature=1.0, top_k=1),
        GenerationParams(temperature=5.0, top_p=1e-6),
        GenerationParams(temperature=1.0, min_p=1.0),
    ],
    ids=["top_k=1", "tiny top_p", "min_p=1"],
)
def test_filters_that_keep_one_token_equal_greedy(logits, params):
    assert (draws(logits, params, n=50) == logits.argmax(-1)).all()


def test_top_k_only_samples_the_k_best(logits):
    out = draws(logits, GenerationParams(temperature=10.0, top_k=5))
    allowed = logits.topk(5, dim=-1).indices  # (B, 5)
    for b in range(4):
        assert set(out[:, b].tolist()) <= set(allowed[b].tolist())
    assert len(set(out[:, 0].tolist())) > 1  # a hot temperature spreads over the five


def test_top_p_keeps_the_smallest_nucleus():
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p=0.7 needs the first two tokens.
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    out = draws(probs.log(), GenerationParams(temperature=1.0, top_p=0.7), n=300)
    assert set(out[:, 0].tolist()) == {1, 3}
    out = draws(probs.log(), GenerationParams(temperature=1.0, top_p=0.75), n=300)
    assert set(out[:, 0].tolist()) == {1, 3}  # 0.8 covers 0.75 with two tokens
    out = draws(probs.log(), GenerationParams(temperature=1.0, top_p=0.81), n=300)
    assert set(out[:, 0].tolist()) == {1, 2, 3}


def test_min_p_drops_tokens_below_fraction_of_top():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = draws(probs.log(), GenerationParams(temperature=1.0, min_p=0.25), n=300)
    assert set(out[:, 0].tolist()) == {0, 1, 2}  # 0.05 < 0.25 * 0.5
    out = draws(probs.log(), GenerationParams(temperature=1.0, min_p=0.5), n=300)
    assert set(out[:, 0].tolist()) == {0, 1}


def test_sampling_follows_the_distribution():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    out = draws(probs.log(), GenerationParams(temperature=1.0), n=4000)[:, 0]
    freq = torch.bincount(out, minlength=3).float() / len(out)
    assert torch.allclose(freq, probs[0], atol=0.03)


def test_repetition_penalty_matches_direct_computation(logits):
    prev = torch.tensor([[1, 2, 3, -1], [5, 5, 6, 7], [0, -1, -1, -1], [999, 8, 9, 10]])
    penalty = 1.3
    expected = logits.clone()
    for b in range(4):
        for t in set(prev[b].tolist()) - {-1}:
            x = logits[b, t]
            expected[b, t] = x / penalty if x > 0 else x * penalty
    mask = seen_mask(prev, V)
    assert mask.sum().item() == 3 + 3 + 1 + 4
    assert torch.equal(apply_repetition_penalty(logits, mask, penalty), expected)
    params = GenerationParams(temperature=0, repetition_penalty=penalty)
    # both forms of prev_tokens (ids or a bool mask) give the argmax of the penalized logits
    assert torch.equal(sample(logits, params, None, prev), expected.argmax(-1))
    assert torch.equal(sample(logits, params, None, mask), expected.argmax(-1))


def test_repetition_penalty_changes_greedy_choice():
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    params = GenerationParams(temperature=0, repetition_penalty=1.2)
    assert sample(logits, params, None, torch.tensor([[0]])).item() == 1
    assert (
        sample(logits, params.replace(repetition_penalty=1.0), None, torch.tensor([[0]])).item()
        == 0
    )


def test_seeded_sampling_is_reproducible_and_seeds_differ(logits):
    params = GenerationParams(temperature=1.0, top_p=0.95)
    a = draws(logits, params, n=30, seed=123)
    b = draws(logits, params, n=30, seed=123)
    c = draws(logits, params, n=30, seed=124)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_a_row_samples_the_same_alone_or_in_a_batch(logits):
    params = GenerationParams(temperature=1.0, top_k=50)
    batch = draws(logits, params, n=30, seed=7)
    alone = draws(logits[2:3], params, n=30, seed=9)  # row 2 of a batch seeded 7 uses 7 + 2
    assert torch.equal(batch[:, 2], alone[:, 0])


def test_global_seed_controls_unseeded_generators(logits):
    params = GenerationParams(temperature=1.0)
    torch.manual_seed(5)
    a = draws(logits, params, n=10, seed=None)
    torch.manual_seed(5)
    assert torch.equal(a, draws(logits, params, n=10, seed=None))


def test_shared_generator_and_global_rng_work(logits):
    params = GenerationParams(temperature=1.0)
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    assert torch.equal(sample(logits, params, g1), sample(logits, params, g2))
    assert sample(logits, params).shape == (4,)
    with pytest.raises(ValueError, match="generators"):
        sample(logits, params, make_generators(0, 2))


def reference_top_p(logits, temperature, top_p, u):
    """Nucleus sampling by a full sort and an inverse CDF, one row at a time."""
    out = []
    for row, ub in zip(logits, u, strict=True):
        probs, order = torch.softmax(row / temperature, -1).sort(descending=True)
        probs[probs.cumsum(-1) - probs >= top_p] = 0
        cdf = probs.double().cumsum(-1)
        out.append(order[torch.searchsorted(cdf, ub * cdf[-1], right=True)])
    return torch.stack(out)


@pytest.mark.parametrize("scale", [0.5, 8.0], ids=["flat nucleus > 256", "peaked"])
def test_top_p_matches_a_full_sort(scale):
    V = 5000
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(1)) * scale
    params = GenerationParams(temperature=0.7, top_p=0.95)
    for seed in range(20):
        got = sample(logits, params, make_generators(seed, 3))
        u = torch.stack(
            [torch.rand((), generator=g, dtype=torch.float64) for g in make_generators(seed, 3)]
        )
        assert torch.equal(got, reference_top_p(logits, 0.7, 0.95, u))
