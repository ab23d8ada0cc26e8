"""The key demonstration: a short LoRA fine-tune of the real default model teaches it an
answer format it does not follow, measured with `llmos.evaluate` on held-out words.

The format: asked to tag a word, answer with the word in double square brackets and
nothing else ("Tag: zebra" -> "[[zebra]]"). The base model answers in prose (no exact
matches); after a few steps on 40 words x 3 phrasings, it must tag 20 words it never saw
in training at >= 80%.
"""

from __future__ import annotations

import pytest

from llmos_jupyter import api

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
TRAIN_WORDS = ("dog cat horse cow lion tiger rabbit mouse sheep goat wolf bear fox deer monkey "
               "elephant bread cheese apple rice pasta soup cake banana carrot potato pizza "
               "salad butter cookie orange egg river mountain chair window garden pencil "
               "guitar rocket").split()
HELD_WORDS = ("zebra giraffe camel squirrel donkey kangaroo hamster panda leopard duck "
              "sandwich noodles yogurt pancake grape tomato bridge lantern violin castle").split()
PHRASINGS = ["Tag: {w}", "Please tag the word {w}.", "Tag this word: {w}"]


def rows(words: list[str], answer_key: str) -> list[dict[str, str]]:
    if answer_key == "response":  # training: every phrasing of every word
        return [{"prompt": p.format(w=w), "response": f"[[{w}]]"} for w in words
                for p in PHRASINGS]
    return [{"text": PHRASINGS[i % 3].format(w=w), "label": f"[[{w}]]"}
            for i, w in enumerate(words)]


def test_lora_fine_tune_teaches_a_format_measured_on_held_out_words(store_home):
    api.datasets.add("tagged-train", rows(TRAIN_WORDS, "response"), replace=True)
    api.datasets.add("tagged-held", rows(HELD_WORDS, "label"), replace=True)
    api.tasks.add("tag", {"name": "tag", "inputs": ["text"], "chat": True, "prompt": "{text}",
                          "params": {"max_tokens": 8, "temperature": 0}})
    if "tagged-tuned" in [m["name"] for m in api.list_models()]:
        api.rm("tagged-tuned")

    base = api.evaluate("tag", data="tagged-held", label="label", model=MODEL)
    assert base.n == 20 and base.accuracy < 0.10, base.failures[:3]

    run = api.train(MODEL, data="tagged-train", output="tagged-tuned", steps=8,
                    batch_size=8, seq_len=64, lr=2e-3, warmup_steps=1, seed=0,
                    lora_targets="all-linear", background=False)
    assert run.status == "succeeded", run.record().error
    losses = [m["loss"] for m in run.metrics]
    assert losses[-1] < losses[0] / 5

    tuned = api.evaluate("tag", data="tagged-held", label="label", model="tagged-tuned")
    print(f"held-out accuracy: base {base.accuracy:.0%} -> tuned {tuned.accuracy:.0%}; "
          f"losses {losses[0]:.3f} -> {losses[-1]:.3f}; failures {tuned.failures}")
    assert tuned.accuracy >= 0.80, tuned.failures
    lineage = api.show("tagged-tuned")["lineage"]
    assert lineage["base"] == MODEL and lineage["dataset"] == "tagged-train"
    assert lineage["steps"] == 8 and lineage["final_loss"] == pytest.approx(losses[-1])
