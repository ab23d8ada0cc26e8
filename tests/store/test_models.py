"""ModelStore on tiny checkpoints: import, list/get/show, presets, copy, remove, errors."""

from __future__ import annotations

import shutil

import pytest

from llmos_jupyter.errors import CheckpointError, ConfigError, LLMOSError, NotFoundError
from llmos_jupyter.formats import read_native
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.models import ModelStore
from tests.checkpoint_factory import write_tiny_gguf, write_tiny_hf_dir


@pytest.fixture
def models(llmos_home) -> ModelStore:
    return ModelStore(Catalog())


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("ckpt") / "tiny.gguf", qtype="Q8_0")


def store_files(home):
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if "locks" not in p.parts and p.name not in ("catalog.db-wal", "catalog.db-shm"))


def test_import_gguf_list_get_show(models, tiny_gguf, llmos_home):
    rec = models.import_model("tiny", tiny_gguf)
    assert rec.kind == "model" and rec.format == "gguf" and rec.arch == "llama"
    assert rec.quantization == "Q8_0" and rec.context_length == 256 and rec.params > 0
    assert rec.license == "apache-2.0" and rec.source == str(tiny_gguf.resolve())
    assert len(rec.sha256) == 64
    assert [m.name for m in models.list()] == ["tiny"]
    assert models.get("tiny") == rec
    d = rec.to_dict()
    assert list(d)[:3] == ["name", "kind", "base"]
    info = models.show("tiny")
    assert info["tokenizer"]["vocab_size"] == 512 and info["tokenizer"]["kind"] == "byte-level BPE"
    assert info["tokenizer"]["bos_id"] is not None and info["chat_template"]
    assert info["size_on_disk"] > 0 and info["presets"] == []
    # The files are native and load back.
    assert models.model_dir("tiny") == llmos_home / "models" / "tiny"
    ckpt = read_native(models.model_dir("tiny"))
    assert ckpt.config.n_layers == 2
    # No staging left behind.
    assert not [p for p in (llmos_home / "tmp").iterdir() if p.name.startswith("stage-")]


def test_import_hf_dir_and_native_dir(models, tmp_path):
    hf = write_tiny_hf_dir(tmp_path / "hf")
    rec = models.import_model("tiny-hf", hf)
    assert rec.format == "hf" and rec.quantization in ("F32", "float32")
    again = models.import_model("tiny-native", models.model_dir("tiny-hf"))
    assert again.format == "native" and again.params == rec.params


def test_import_corrupt_leaves_store_unchanged(models, tiny_gguf, tmp_path, llmos_home):
    models.import_model("good", tiny_gguf)
    before = store_files(llmos_home)
    rows = models.catalog.query("SELECT * FROM models")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_gguf.read_bytes()[:5000])  # truncated
    with pytest.raises(CheckpointError, match="bad.gguf"):
        models.import_model("bad", bad)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="junk.bin"):
        models.import_model("junk", junk)
    with pytest.raises(CheckpointError, match="no such file"):
        models.import_model("missing", tmp_path / "nope.gguf")
    assert store_files(llmos_home) == before
    assert [tuple(r) for r in models.catalog.query("SELECT * FROM models")] == \
        [tuple(r) for r in rows]


def test_import_name_taken_or_invalid(models, tiny_gguf):
    models.import_model("tiny", tiny_gguf)
    with pytest.raises(LLMOSError, match="already exists"):
        models.import_model("tiny", tiny_gguf)
    with pytest.raises(LLMOSError, match="invalid model name"):
        models.import_model("../evil", tiny_gguf)


def test_not_found_suggests_pulled_and_pullable(models, tiny_gguf):
    models.import_model("tiny-model", tiny_gguf)
    with pytest.raises(NotFoundError, match="smollm2-135m-instruct"):
        models.get("smollm2-135m-instrct")
    with pytest.raises(NotFoundError, match="tiny-model"):
        models.get("tiny-modle")
    with pytest.raises(NotFoundError, match="llmos pull smollm2-135m-instruct"):
        models.get("smollm2-135m-instruct")
    with pytest.raises(NotFoundError, match="did you mean 'smollm2-135m-instruct'"):
        models.pull("smollm2-135m-instrct")


def test_presets(models, tiny_gguf):
    models.import_model("tiny", tiny_gguf)
    p = models.create_preset("pirate", "tiny", system="Talk like a pirate.",
                             params={"temperature": 0.2, "stop": "\n", "seed": 3})
    assert p.kind == "preset" and p.base == "tiny" and p.path is None
    assert p.default_params == {"temperature": 0.2, "stop": ["\n"], "seed": 3}
    real, system, params = models.resolve("pirate")
    assert real.name == "tiny" and system == "Talk like a pirate." and params["seed"] == 3
    assert models.model_dir("pirate") == models.model_dir("tiny")
    # A preset on a preset is flattened onto the real model, inheriting and overriding.
    q = models.create_preset("calm-pirate", "pirate", params={"temperature": 0.0})
    assert q.base == "tiny" and q.system == "Talk like a pirate."
    assert q.default_params == {"temperature": 0.0, "stop": ["\n"], "seed": 3}
    info = models.show("pirate")
    assert info["base"] == "tiny" and info["system"] == "Talk like a pirate."
    assert info["arch"] == "llama" and info["kind"] == "preset"
    assert models.show("tiny")["presets"] == ["calm-pirate", "pirate"]
    # Redefining a preset replaces it; a preset can't take a real model's name.
    redefined = models.create_preset("pirate", "tiny", params={"top_k": 5})
    assert redefined.default_params == {"top_k": 5}
    with pytest.raises(LLMOSError, match="already exists"):
        models.create_preset("tiny", "tiny")
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        models.create_preset("x", "tiny", params={"temprature": 1})
    with pytest.raises(ConfigError, match="top_p"):
        models.create_preset("x", "tiny", params={"top_p": 0})
    with pytest.raises(ConfigError, match="max_tokens"):
        models.create_preset("x", "tiny", params={"max_tokens": 1.5})
    with pytest.raises(NotFoundError):
        models.create_preset("x", "nonexistent")


def test_remove_refuses_with_presets_then_cascades(models, tiny_gguf, llmos_home):
    models.import_model("tiny", tiny_gguf)
    models.create_preset("p1", "tiny", system="s")
    models.create_preset("p2", "tiny", params={"seed": 1})
    with pytest.raises(LLMOSError, match="p1, p2"):
        models.remove("tiny")
    assert (llmos_home / "models" / "tiny").is_dir()
    assert models.remove("p1") == ["p1"]
    assert models.remove("tiny", cascade=True) == ["p2", "tiny"]
    assert models.list() == []
    assert not (llmos_home / "models" / "tiny").exists()
    with pytest.raises(NotFoundError):
        models.remove("tiny")


def test_copy_model_and_preset(models, tiny_gguf):
    models.import_model("tiny", tiny_gguf)
    c = models.copy("tiny", "tiny2")
    assert c.path == "models/tiny2" and c.sha256 == models.get("tiny").sha256
    models.remove("tiny")
    assert read_native(models.model_dir("tiny2")).config.n_layers == 2  # files survive
    models.create_preset("p", "tiny2", system="hi")
    assert models.copy("p", "p2").base == "tiny2"
    with pytest.raises(LLMOSError, match="already exists"):
        models.copy("tiny2", "p")


def test_orphan_dir_and_stale_staging_are_invisible_and_replaced(models, tiny_gguf, llmos_home):
    # A crash after the rename but before the INSERT leaves models/<name> without a row.
    models.import_model("tiny", tiny_gguf)
    models.catalog.conn.execute("DELETE FROM models")
    assert models.list() == []
    # A crash during conversion leaves a stage dir nobody owns.
    stale = llmos_home / "tmp" / "stage-model-tiny-deadbeef"
    (stale / "model").mkdir(parents=True)
    (stale / ".owner.lock").touch()
    fresh = ModelStore(Catalog())
    assert not stale.exists()
    assert fresh.import_model("tiny", tiny_gguf).name == "tiny"
    assert read_native(fresh.model_dir("tiny")).config.n_layers == 2


def test_missing_files_are_reported(models, tiny_gguf, llmos_home):
    models.import_model("tiny", tiny_gguf)
    shutil.rmtree(llmos_home / "models" / "tiny")
    with pytest.raises(LLMOSError, match="missing"):
        models.model_dir("tiny")


def test_two_processes_import_the_same_name(llmos_home, tiny_gguf, tmp_path):
    import multiprocessing as mp

    from tests.store import workers

    barrier = tmp_path / "go"
    with mp.get_context("spawn").Pool(2) as pool:
        jobs = [pool.apply_async(workers.import_model,
                                 (str(llmos_home), "tiny", str(tiny_gguf), str(barrier)))
                for _ in range(2)]
        workers.release(barrier, 2)
        results = sorted(j.get(timeout=120) for j in jobs)
    assert results == ["LLMOSError", "ok"]  # one wins, the other is told the name is taken
    models = ModelStore(Catalog())
    assert [m.name for m in models.list()] == ["tiny"]
    assert read_native(models.model_dir("tiny")).config.n_layers == 2
