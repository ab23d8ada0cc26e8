"""The scheduler thread: concurrent requests share decode steps and each gets its solo
answer; a full queue refuses, a cancelled request ends, a bad one fails alone."""

from __future__ import annotations

import threading

import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.engine import GenerationParams, generate
from llmos_jupyter.errors import PromptError
from llmos_jupyter.model.transformer import Transformer
from llmos_jupyter.runtime.loaded_model import LoadedModel
from llmos_jupyter.runtime.scheduler import QueueFullError, Scheduler
from llmos_jupyter.tokenizer import Tokenizer
from tests.checkpoint_factory import tiny_tokenizer

GREEDY = GenerationParams(temperature=0, max_tokens=10, ignore_eos=True)


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(1234)
    model = Transformer(ModelConfig.from_name("tiny")).eval()
    tok = Tokenizer.from_spec(TokenizerSpec(**tiny_tokenizer(512)))
    return LoadedModel("tiny", model, tok, mode="float32")


@pytest.fixture
def scheduler(loaded):
    s = Scheduler(loaded, max_rows=4, max_queue=3)
    yield s
    s.close(timeout=60)


def prompt(i: int) -> list[int]:
    return [(11 * i + 5 * j) % 500 + 3 for j in range(3 + 2 * i)]


def solo(loaded, p, params=GREEDY):
    with loaded.lock:
        return generate(loaded.model, loaded.tokenizer, [p], params)[0]


def test_concurrent_requests_each_get_their_solo_answer(loaded, scheduler):
    results = {}

    def client(i):
        req = scheduler.submit(prompt(i), GREEDY.replace(max_tokens=6 + i))
        pieces = [ev.piece for ev in req.events() if ev.result is None]
        results[i] = (req.wait(), "".join(pieces))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(7))
    for i, (res, streamed) in results.items():
        alone = solo(loaded, prompt(i), GREEDY.replace(max_tokens=6 + i))
        assert res.token_ids == alone.token_ids
        assert streamed == res.text == alone.text
    assert scheduler.stats.requests == 7
    assert scheduler.stats.completion_tokens == sum(6 + i for i in range(7))
    assert scheduler.stats.rows_stepped > scheduler.stats.steps  # steps were shared


def test_full_scheduler_refuses_then_serves(loaded, scheduler):
    with loaded.lock:  # the scheduler cannot start a step: everything stays admitted
        reqs = [scheduler.submit(prompt(i), GREEDY) for i in range(7)]
        with pytest.raises(QueueFullError, match="busy"):
            scheduler.submit(prompt(8), GREEDY)
        assert scheduler.stats.rejected == 1
    for i, req in enumerate(reqs):
        assert req.wait(120).token_ids == solo(loaded, prompt(i)).token_ids
    assert scheduler.submit(prompt(1), GREEDY).wait(120).token_ids == solo(
        loaded, prompt(1)).token_ids


def test_cancel_ends_one_request_and_not_the_other(loaded, scheduler):
    long = GREEDY.replace(max_tokens=150)
    victim = []

    def listener(ev):  # runs in the scheduler thread: the cancel lands before the next step
        if ev.piece and len(victim[0].seq.row.token_ids) == 3:
            victim[0].cancel()

    with loaded.lock:  # both join the same first step
        victim.append(scheduler.submit(prompt(2), long, listener))
        other = scheduler.submit(prompt(3), GREEDY)
    res = victim[0].wait(60)
    assert res.finish_reason == "cancelled" and len(res.token_ids) == 3
    assert other.wait(60).token_ids == solo(loaded, prompt(3)).token_ids


def test_bad_prompt_fails_alone(loaded, scheduler):
    bad = scheduler.submit([3, 9999], GREEDY)  # outside the vocabulary of 512
    good = scheduler.submit(prompt(0), GREEDY)
    with pytest.raises(PromptError, match="outside the vocabulary"):
        bad.wait(60)
    assert good.wait(60).token_ids == solo(loaded, prompt(0)).token_ids


def test_close_finishes_admitted_requests_and_refuses_new_ones(loaded):
    s = Scheduler(loaded)
    req = s.submit(prompt(1), GREEDY)
    s.close(timeout=60)
    assert req.wait(0).token_ids == solo(loaded, prompt(1)).token_ids
    with pytest.raises(QueueFullError, match="shutting down"):
        s.submit(prompt(1), GREEDY)
