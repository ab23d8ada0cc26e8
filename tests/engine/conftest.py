"""Fixtures of the engine tests: the real Transformer with random weights, a real tokenizer."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.model.transformer import Transformer
from llmos_jupyter.tokenizer import Tokenizer
from tests.checkpoint_factory import tiny_tokenizer


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Run the engine tests on one intra-op thread, restoring the setting afterwards.

    The tiny model's matmuls are far too small to gain from threads, and on a shared
    2-core machine OpenMP's spinning threads made a decode step ~15x slower (7 ms -> 110 ms).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model() -> Transformer:
    """ModelConfig "tiny" (vocab 512, context 256) with seeded random weights."""
    torch.manual_seed(1234)
    return Transformer(ModelConfig.from_name("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_tok() -> Tokenizer:
    """A real byte-level BPE tokenizer over the same 512 ids (ids 3-258 are raw bytes)."""
    return Tokenizer.from_spec(TokenizerSpec(**tiny_tokenizer(512)))
