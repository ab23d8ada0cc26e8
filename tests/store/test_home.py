"""Store names: matched whole, so a trailing newline (or anything after) is refused."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.datasets import DatasetStore
from llmos_jupyter.store.home import check_name


@pytest.mark.parametrize("name", ["ok\n", "ok\r\n", "ok\nrm", "\nok", "ok ", "a" * 129])
def test_check_name_refuses(name):
    with pytest.raises(LLMOSError, match="invalid model name"):
        check_name("model", name)


def test_check_name_accepts():
    for name in ("ok", "smollm2-135m-instruct", "org:model.v2_1", "a" * 128):
        assert check_name("model", name) == name


def test_dataset_with_trailing_newline_refused_and_nothing_left(llmos_home):
    datasets = DatasetStore(Catalog())
    with pytest.raises(LLMOSError, match=r"invalid dataset name 'ok\\n'"):
        datasets.add("ok\n", [{"text": "a"}])
    assert datasets.names() == []
    assert not any((llmos_home / "datasets").iterdir())
