"""Hostile checkpoints at `import`: each is refused with a clear error and leaves nothing.

One test per defect of issue 13 that concerns checkpoints, each with the exact input that
showed it: dims whose product overflows int64 (2), absurd hyper-parameters (3), a
tokenizer that cannot be built (4), misaligned, overlapping or retyped tensors (5), shard
paths outside the checkpoint (9), and work done before validation (11). "Nothing left"
means: no models/<name> directory, no catalog row, no staging directory.
"""

from __future__ import annotations

import json
import math
import struct
import tracemalloc

import pytest

from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.store import models as models_module
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.models import ModelStore
from tests.checkpoint_factory import write_tiny_gguf, write_tiny_hf_dir
from tests.formats.gguf_layout import GGUFLayout

F32, I32, Q4_0, Q5_0 = 0, 26, 2, 6


@pytest.fixture
def models(llmos_home) -> ModelStore:
    return ModelStore(Catalog())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> bytes:
    """A tiny llama GGUF laid out as the default model is: Q8_0 embedding, Q4_1 weights,
    F32 norms, tied output."""
    path = write_tiny_gguf(tmp_path_factory.mktemp("g") / "t.gguf", qtype="Q4_1",
                           qtype_overrides={"token_embd.weight": "Q8_0"}, tie_embeddings=True)
    return path.read_bytes()


def refused(models: ModelStore, path, match: str) -> CheckpointError:
    """Import `path` as 'bad', expect CheckpointError matching `match`, and check that
    the store holds nothing of it."""
    with pytest.raises(CheckpointError, match=match) as info:
        models.import_model("bad", path)
    home = models.catalog.home
    assert not (home / "models" / "bad").exists()
    assert models.catalog.query("SELECT name FROM models WHERE name = 'bad'") == []
    assert not [p for p in (home / "tmp").glob("stage-*")]
    assert str(path) in str(info.value)
    return info.value


def write(tmp_path, data: bytes, name: str = "bad.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_unedited_file_imports(models, tiny, tmp_path):
    rec = models.import_model("good", write(tmp_path, tiny, "good.gguf"))
    assert rec.quantization == "Q4_1" and (models.catalog.home / "models" / "good").is_dir()


# -- defect 2: dims whose product overflows int64 -------------------------------------------


@pytest.mark.parametrize("dims", [[2**32, 2**32], [2**63, 2], [2**62, 2**62]])
def test_dims_overflowing_int64_are_refused(models, tiny, tmp_path, dims):
    # F32, so the block size is 1 and the product alone sizes the tensor: np.prod of these
    # dims wraps to 0 (or a negative), which once passed the bounds check.
    data = GGUFLayout(tiny).set_tensor(tiny, "token_embd.weight", dims=dims, type_id=F32)
    err = refused(models, write(tmp_path, data), "cannot fit in the file")
    assert str(math.prod(dims)) in str(err)


def test_files_are_taken_back_when_the_catalog_insert_fails(models, tiny, tmp_path):
    # Defect 2 once failed at the INSERT and left models/<name> behind, which `llmos rm`
    # cannot see. A trigger makes the real insert fail the same way.
    with models.catalog.transaction() as conn:
        conn.execute("CREATE TRIGGER no_insert BEFORE INSERT ON models "
                     "BEGIN SELECT RAISE(ABORT, 'insert refused for the test'); END")
    with pytest.raises(Exception, match="insert refused for the test"):
        models.import_model("bad", write(tmp_path, tiny, "good.gguf"))
    assert not (models.catalog.home / "models" / "bad").exists()
    assert not list((models.catalog.home / "tmp").glob("stage-*"))


# -- defect 3: absurd hyper-parameters -------------------------------------------------------


@pytest.mark.parametrize("key,value,match", [
    ("llama.context_length", 2**32 - 1, r"max_seq_len=4294967295 is outside"),
    ("llama.context_length", 100_000_000, r"max_seq_len=100000000 is outside"),
    ("llama.context_length", 0, r"max_seq_len=0 is outside"),
    ("llama.attention.layer_norm_rms_epsilon", math.nan, r"norm_eps=nan must be finite"),
    ("llama.attention.layer_norm_rms_epsilon", -1e-5, r"norm_eps=.* must be finite, > 0"),
    ("llama.rope.freq_base", 0.0, r"rope_theta=0.0 must be finite"),
    ("llama.rope.freq_base", math.nan, r"rope_theta=nan must be finite"),
    ("llama.rope.freq_base", math.inf, r"rope_theta=inf must be finite"),
    ("llama.block_count", 2**32 - 1, r"n_layers=4294967295 is outside"),
    ("llama.attention.head_count", 0, r"n_heads=0 is outside"),
])
def test_absurd_gguf_hyper_parameters_are_refused(models, tiny, tmp_path, key, value, match):
    data = GGUFLayout(tiny).set_kv(tiny, key, value)
    refused(models, write(tmp_path, data), match)


@pytest.mark.parametrize("edit,match", [
    ({"max_position_embeddings": 1e12}, r"max_seq_len must be an integer, not 1000000000000.0"),
    ({"max_position_embeddings": 10**12}, r"max_seq_len=1000000000000 is outside"),
    ({"max_position_embeddings": -5}, r"max_seq_len=-5 is outside"),
    # Within the plain bound, but RoPE tables of 2^20 x 128 floats (512 MiB each).
    ({"max_position_embeddings": 2**20, "head_dim": 128},
     r"at most 262144 positions at this head_dim"),
    ({"vocab_size": 512.0}, r"vocab_size must be an integer, not 512.0"),
    ({"num_hidden_layers": True}, r"n_layers must be an integer, not True"),
    ({"rms_norm_eps": "1e-5"}, r"norm_eps must be a number, not '1e-5'"),
    ({"rms_norm_eps": -1.0}, r"norm_eps=-1.0 must be finite"),
    ({"rope_theta": 0}, r"rope_theta=0 must be finite"),
    ({"rope_scaling": {"rope_type": "linear", "factor": -2.0}}, r"factor=-2.0 must be finite"),
])
def test_absurd_hf_config_values_are_refused(models, tmp_path, edit, match):
    root = write_tiny_hf_dir(tmp_path / "hf")
    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**cfg, **edit}))
    refused(models, root, match)


def test_hf_nan_epsilon_is_refused(models, tmp_path):
    root = write_tiny_hf_dir(tmp_path / "hf")
    text = (root / "config.json").read_text()
    cfg = json.loads(text)
    # Python's json reads the bare NaN token other writers emit.
    text = text.replace(json.dumps(cfg["rms_norm_eps"]), "NaN", 1)
    (root / "config.json").write_text(text)
    refused(models, root, r"norm_eps=nan must be finite")


# -- defect 4: what a load needs, checked at import --------------------------------------------


def test_corrupted_bpe_merges_are_refused(models, tiny, tmp_path):
    layout = GGUFLayout(tiny)
    at, n = layout.kv["tokenizer.ggml.merges"].items[1]  # "h e"
    assert tiny[at : at + n] == b"h e"
    data = tiny[:at] + b"h q" + tiny[at + n :]  # same length: "hq" is no token
    refused(models, write(tmp_path, data), r"tokenizer cannot be built.*merge 1 'h q'")


def test_merge_that_is_not_two_tokens_is_refused(models, tiny, tmp_path):
    layout = GGUFLayout(tiny)
    at, n = layout.kv["tokenizer.ggml.merges"].items[0]  # "Ġ t"
    data = tiny[:at] + tiny[at : at + n].replace(b" ", b"x") + tiny[at + n :]
    refused(models, write(tmp_path, data), r"tokenizer cannot be built.*not two byte-level")


def test_hf_directory_without_tokenizer_is_refused(models, tmp_path):
    root = write_tiny_hf_dir(tmp_path / "hf", tokenizer=None)
    refused(models, root, r"has no tokenizer \(expected tokenizer.json, or vocab.json")


def test_more_tokens_than_embedding_rows_is_refused(models, tmp_path):
    root = write_tiny_hf_dir(tmp_path / "hf")
    cfg = json.loads((root / "config.json").read_text())
    tok = json.loads((root / "tokenizer.json").read_text())
    tok["model"]["vocab"]["<|extra|>"] = cfg["vocab_size"]
    (root / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    refused(models, root, r"513 tokens but the embedding only 512 rows")


# -- defect 5: misaligned, overlapping and retyped tensors -------------------------------------


def _second_tensor(tiny: bytes) -> tuple[GGUFLayout, str]:
    layout = GGUFLayout(tiny)
    names = list(layout.tensors)
    return layout, names[1]


def test_misaligned_offset_is_refused(models, tiny, tmp_path):
    layout, name = _second_tensor(tiny)
    _, _, offset = layout.tensor_fields(name)
    data = layout.set_tensor(tiny, name, offset=offset + 1)
    refused(models, write(tmp_path, data),
            rf"tensor '{name}' has offset {offset + 1}, expected {offset}")


def test_overlapping_tensors_are_refused(models, tiny, tmp_path):
    layout, name = _second_tensor(tiny)
    first = list(layout.tensors)[0]
    data = layout.set_tensor(tiny, name, offset=layout.tensor_fields(first)[2])
    refused(models, write(tmp_path, data), rf"tensor '{name}' has offset 0, expected \d+")


def test_swapped_offsets_are_refused(models, tiny, tmp_path):
    layout = GGUFLayout(tiny)
    a, b = list(layout.tensors)[2:4]
    oa, ob = layout.tensor_fields(a)[2], layout.tensor_fields(b)[2]
    data = layout.set_tensor(layout.set_tensor(tiny, a, offset=ob), b, offset=oa)
    refused(models, write(tmp_path, data), rf"tensor '{a}' has offset {ob}, expected {oa}")


def test_norm_retyped_to_integer_is_refused(models, tiny, tmp_path):
    # F32 -> I32 keeps every size and offset: only the type says it is wrong.
    data = GGUFLayout(tiny).set_tensor(tiny, "blk.0.attn_norm.weight", type_id=I32)
    refused(models, write(tmp_path, data), r"'blk.0.attn_norm.weight' .* has type I32")


def test_weight_retyped_to_another_size_is_refused(models, tiny, tmp_path):
    layout = GGUFLayout(tiny)
    # Q4_1 (20 bytes per 32 weights) -> Q5_0 (22): the next offset no longer follows.
    name = next(n for n in layout.tensors if n.endswith("attn_q.weight"))
    data = layout.set_tensor(tiny, name, type_id=Q5_0)
    refused(models, write(tmp_path, data), r"has offset \d+, expected \d+")


def test_last_tensor_retyped_smaller_is_refused(models, tiny, tmp_path):
    # The last tensor (output_norm, 64 F32 = 256 bytes) read as Q4_0 needs 36 (64 padded):
    # every offset still follows, but the data no longer ends where the table says.
    layout = GGUFLayout(tiny)
    last = list(layout.tensors)[-1]
    assert layout.tensor_fields(last)[:2] == ([64], F32)
    data = layout.set_tensor(tiny, last, type_id=Q4_0)
    refused(models, write(tmp_path, data), r"192 bytes follow the last tensor's data")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_block_scale_is_refused(models, tiny, tmp_path, value):
    # The first Q8_0 block of the embedding starts the data; its float16 scale goes bad.
    layout = GGUFLayout(tiny)
    assert list(layout.tensors)[0] == "token_embd.weight"
    start = -(-layout.header_end // 32) * 32
    data = tiny[:start] + struct.pack("<e", value) + tiny[start + 2 :]
    refused(models, write(tmp_path, data), r"tensors \['tok_embeddings.weight'\] hold NaN")


def test_trailing_garbage_is_refused(models, tiny, tmp_path):
    refused(models, write(tmp_path, tiny + bytes(4096)), r"4096 bytes follow the last tensor")


# -- defect 9: paths from the checkpoint's own files stay inside it ---------------------------


@pytest.mark.parametrize("target", ["../x/model.safetensors", "/etc/passwd",
                                    "sub/../../model.safetensors", "model.safetensors\0.txt"])
def test_shard_index_paths_outside_the_checkpoint_are_refused(models, tmp_path, target):
    root = write_tiny_hf_dir(tmp_path / "hf", shards=2)
    # A real safetensors file where the hostile path points, so only confinement stops it.
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.safetensors").write_bytes(
        next(root.glob("model-*.safetensors")).read_bytes())
    index = json.loads((root / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = target
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    err = refused(models, root, r"which is not a .safetensors file inside the checkpoint")
    assert repr(target) in str(err)


# -- defect 11: validation before any expensive work -------------------------------------------


def test_directory_without_config_is_refused_before_hashing(models, tmp_path, monkeypatch):
    hashed = []
    real = models_module.checkpoint_sha256
    monkeypatch.setattr(models_module, "checkpoint_sha256",
                        lambda p: hashed.append(p) or real(p))
    lib = tmp_path / "lib"
    for i in range(50):
        (lib / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (lib / f"d{i % 5}" / f"f{i}.so").write_bytes(bytes(1000))
    refused(models, lib, r"directory has no config.json")
    assert hashed == []
    # ... and a good import does hash, once.
    good = write_tiny_hf_dir(tmp_path / "hf")
    models.import_model("good", good)
    assert hashed == [good]


def test_80mb_of_empty_metadata_strings_is_refused_in_bounded_memory(models, tmp_path):
    count = 10_000_000  # 80 MB: each empty string is its u64 length
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = b"junk"
    head += struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, count)
    path = tmp_path / "empty-strings.gguf"
    with path.open("wb") as f:
        f.write(head)
        f.truncate(len(head) + 8 * count)
    tracemalloc.start()
    try:
        refused(models, path, r"metadata array 'junk' has 10000000 items; LLMOS reads at most")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # no per-item Python objects were made


def test_many_string_arrays_are_bounded_in_total(models, tmp_path):
    from llmos_jupyter.formats.gguf_file import MAX_ARRAY_ITEMS, MAX_METADATA_ITEMS

    n_arrays = MAX_METADATA_ITEMS // MAX_ARRAY_ITEMS + 1
    body = b""
    for i in range(n_arrays):
        key = f"junk{i}".encode()
        body += struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 0, MAX_ARRAY_ITEMS)
        body += bytes(MAX_ARRAY_ITEMS)  # u8 items: cheap to write, counted all the same
    path = write(tmp_path, b"GGUF" + struct.pack("<IQQ", 3, 0, n_arrays) + body, "many.gguf")
    refused(models, path, rf"'junk{n_arrays - 1}' has {MAX_ARRAY_ITEMS} items")
