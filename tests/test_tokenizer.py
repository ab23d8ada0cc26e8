"""Tokenizer tests: our tiktoken Encodings must give the original tokenizer's ids exactly.

The reference is Hugging Face's tokenizer for the same GGUF (`AutoTokenizer` with
`gguf_file`). transformers' GGUF converter ignores `tokenizer.ggml.pre=smollm` and gives
SmolLM2 plain GPT-2 splitting, while SmolLM2's own tokenizer.json (and llama.cpp) split
every digit first: Sequence[Digits(individual_digits=True), ByteLevel]. So the exact
reference is that AutoTokenizer with its pre-tokenizer set back to the original one;
`test_transformers_gguf_converter_drops_digit_split` pins the difference down.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.formats.hf_tokenizer import spec_from_tokenizer_json
from llmos_jupyter.tokenizer import (
    StreamDecoder,
    Tokenizer,
    bpe_conflicts,
    build_tables,
    byte_to_unicode,
)

HAND_CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a test, isn't it?",
    "3.14159 12345678 2026-11-29 version 1.0.2 and 1,000,000 $42.50 100%",
    "a  b   c\n\n\n  x\t\ty",
    "你好，世界。大型语言模型",
    "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🏳️‍🌈 flag, 🇯🇵 Japan",
    "def f(x):\n    if x:\n        return {'a': [1, 2]}\n\treturn None\n",
    '{"name": "llmos", "ids": [1, 2, 3], "ok": true, "nested": {"k": null}}',
    "Crème brûlée, naïve façade, Ångström, Øresund, Straße",
    "مرحبا بالعالم — नमस्ते दुनिया",
    "I'VE don't WE'LL you're SHE'S they'd I'm",
    "   leading and trailing whitespace   ",
    "\n\nnewlines first\r\nand CRLF\r\n",
    "",
    " ",
    "x",
    "<|im_start|>user\nhello<|im_end|>",
    "Ⅻ ½ ² ٣٤٥ ५६ １２３ ௰",  # Nl, No and other-script digits: all \p{N}
    "tabs\t\t\t\tand    spaces    before 7 and\u00a0nbsp\u3000ideographic",
    "(\x04) control\x06chars\x1d",  # bytes SmolLM2's vocabulary has no token for
]


# ---- the real model, read straight from the GGUF (no dependency on formats/) -------------
@functools.cache
def load_smollm_spec(path: Path) -> TokenizerSpec:
    """TokenizerSpec from a GGUF's tokenizer.ggml.* fields, as the GGUF reader fills it."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields

    def strings(name: str) -> list[str]:
        field = fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    def value(name: str):
        return fields[name].contents() if name in fields else None

    return TokenizerSpec(
        tokens=strings("tokenizer.ggml.tokens"),
        merges=strings("tokenizer.ggml.merges"),
        pre=value("tokenizer.ggml.pre"),
        token_types=[int(t) for t in value("tokenizer.ggml.token_type")],
        bos_id=value("tokenizer.ggml.bos_token_id"),
        eos_id=value("tokenizer.ggml.eos_token_id"),
        pad_id=value("tokenizer.ggml.padding_token_id"),
        add_bos=bool(value("tokenizer.ggml.add_bos_token")),
        chat_template=value("tokenizer.chat_template"),
    )


@functools.cache
def load_hf_tokenizers(path: Path):
    """(transformers' GGUF tokenizer as converted, a copy of its Rust tokenizer with
    SmolLM2's own pre-tokenizer). Loaded once per session: it reads the whole GGUF."""
    from transformers import AutoTokenizer

    converted = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    original = HFTokenizer.from_str(converted.backend_tokenizer.to_str())
    original.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return converted, original


@pytest.fixture(scope="module")
def smol(smollm2_gguf) -> Tokenizer:
    return Tokenizer.from_spec(load_smollm_spec(smollm2_gguf))


@pytest.fixture(scope="module")
def hf_original(smollm2_gguf):
    return load_hf_tokenizers(smollm2_gguf)[1]


@pytest.fixture(scope="module")
def hf_converted(smollm2_gguf):
    return load_hf_tokenizers(smollm2_gguf)[0]


def random_unicode(n: int, seed: int = 1234) -> list[str]:
    """`n` strings drawn from the character classes tokenizers disagree on most."""
    rng = random.Random(seed)
    pools = [
        "abcXYZ'sdtvmlre", " \t\n\r\x0b\x0c\x85\xa0\u2000\u2009\u200b\u2028\u3000",
        "0123456789٠١٢३४５⅔²Ⅻ", ".,;:!?-_()[]{}<>/\\\"'`~@#$%^&*+=|",
        "éñüßøæçÅÉ", "\u0301\u0308\u0327", "你好世界語言モデルカタカナ한국어",
        "😀👍🏽👩‍💻🇫🇷❤️", "αβγΔΩабвЖЯ", "\x00\x01\x04\x06\x1b\x7f",
    ]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 24)):
            r = rng.random()
            if r < 0.85:
                chars.append(rng.choice(rng.choice(pools)))
            elif r < 0.95:  # any BMP scalar value except surrogates
                c = rng.randint(0x20, 0xFFFD)
                chars.append(chr(c if not 0xD800 <= c < 0xE000 else 0x41))
            else:
                chars.append(chr(rng.randint(0x10000, 0x10FFFF)))
        out.append("".join(chars))
    return out


# ---- the real model ------------------------------------------------------------------------
def test_smollm_vocabulary_facts(smol):
    assert (smol.vocab_size, smol.bos_id, smol.eos_id, smol.pad_id) == (49152, 1, 2, 2)
    assert smol.add_bos is False
    assert smol.special_tokens["<|im_start|>"] == 1
    assert len(smol.special_tokens) == 17
    assert smol.stop_ids == frozenset({0, 2})  # <|endoftext|>, <|im_end|>
    assert smol.token_bytes(19556) == b"Hello"
    # SmolLM2's ids are in merge order, so the Encoding's ranks are the model's ids.
    assert smol.encoding.encode_ordinary("Hello world") == smol.encode("Hello world")


def test_smollm_merges_are_tiktoken_exact(smollm2_gguf):
    """No token whose own bytes tiktoken would encode differently from the merge list."""
    tables = build_tables(load_smollm_spec(smollm2_gguf))
    assert tables.rank_to_id is None
    assert bpe_conflicts(tables) == []


def hf_ids(reference: HFTokenizer, texts: list[str], allow_special: bool) -> list[list[int]]:
    # encode_special_tokens=True is HF's split_special_tokens: special text as plain text.
    reference.encode_special_tokens = not allow_special
    return [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("allow_special", [False, True])
def test_ids_equal_original_tokenizer(smol, hf_original, allow_special):
    corpus = HAND_CORPUS + random_unicode(3000)
    want = hf_ids(hf_original, corpus, allow_special)
    got = smol.encode_batch(corpus, allow_special=allow_special)
    diffs = [(t, w, g) for t, w, g in zip(corpus, want, got, strict=True) if w != g]
    assert diffs == [], f"{len(diffs)} of {len(corpus)} differ, first: {diffs[:3]}"
    assert [smol.encode(t, allow_special) for t in HAND_CORPUS] == got[: len(HAND_CORPUS)]


def test_long_document_matches(smol, hf_original):
    text = "\n\n".join(HAND_CORPUS * 20)
    assert [smol.encode(text)] == hf_ids(hf_original, [text], allow_special=False)


def test_decode_roundtrips(smol):
    # Text with a byte the vocabulary has no token for cannot come back (see below).
    missing = smol._tables.missing_bytes
    corpus = [t for t in HAND_CORPUS + random_unicode(3000)
              if not set(t.encode()) & set(missing)]
    assert len(corpus) > 1500
    for text in corpus:
        assert smol.decode(smol.encode(text)) == text


def test_bytes_without_a_token_are_dropped_like_hf(smol, hf_original):
    # HF removes them before merging, so "(" and ")" still merge into "()".
    assert [smol.encode("(\x04)")] == hf_ids(hf_original, ["(\x04)"], allow_special=False)
    assert smol.decode(smol.encode("(\x04)")) == "()"
    assert smol.encode("\x04\x04") == []


def test_special_token_text_is_ordinary_unless_allowed(smol, hf_converted):
    text = "<|im_start|>user\nhi<|im_end|>\n"  # no digits: the converted tokenizer is exact
    as_text = smol.encode(text)
    assert 1 not in as_text and 2 not in as_text
    # HF: split_special_tokens=True encodes special-token text as ordinary text.
    assert as_text == hf_converted(text, add_special_tokens=False, split_special_tokens=True)[
        "input_ids"]
    allowed = smol.encode(text, allow_special=True)
    assert allowed[0] == 1 and 2 in allowed
    assert allowed == hf_converted(text, add_special_tokens=False)["input_ids"]  # HF default
    assert smol.encode_batch([text], allow_special=True) == [allowed]
    assert smol.decode(allowed) == text


def test_transformers_gguf_converter_drops_digit_split(smol, hf_converted, hf_original):
    """transformers gives SmolLM2's GGUF plain GPT-2 splitting: whitespace before a digit
    differs ("a", " ", " ", "1" instead of "a", "  ", "1"); the rest agrees."""
    assert hf_converted.encode("a  1", add_special_tokens=False) == [81, 216, 216, 33]
    assert [smol.encode("a  1")] == hf_ids(hf_original, ["a  1"], allow_special=False)
    assert smol.encode("a  1") == [81, 256, 33]
    no_digits = [t for t in HAND_CORPUS + random_unicode(500) if not any(c.isdigit() for c in t)
                 and "Ⅻ" not in t and "½" not in t]
    assert hf_ids(hf_converted.backend_tokenizer, no_digits, False) == smol.encode_batch(no_digits)


def test_decode_rejects_bad_ids(smol):
    with pytest.raises(ValueError, match="49152"):
        smol.decode([5, 49152])
    with pytest.raises(ValueError, match="-1"):
        smol.decode([-1])


def test_stream_decoder_never_splits_a_character(smol):
    text = "大型语言模型 👩‍👩‍👧‍👦 çava 🇯🇵 你好"
    ids = smol.encode(text)
    assert len(ids) > len(text) // 2  # many characters span several tokens
    stream = StreamDecoder(smol)
    pieces = [stream.push(i) for i in ids]
    assert "\ufffd" not in "".join(pieces)
    assert "".join(pieces) + stream.flush() == text
    assert any(p == "" for p in pieces)  # some tokens were held back


def test_spec_from_tokenizer_json_smollm(smollm2_gguf, hf_original, smol):
    obj = json.loads(hf_original.to_str())
    config = {"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
              "pad_token": "<|im_end|>", "add_bos_token": False,
              "chat_template": smol.spec.chat_template}
    spec = spec_from_tokenizer_json(obj, config)
    gguf_spec = load_smollm_spec(smollm2_gguf)
    assert spec.pre == "smollm"
    assert spec.tokens == gguf_spec.tokens and spec.merges == gguf_spec.merges
    assert spec.token_types == gguf_spec.token_types
    assert (spec.bos_id, spec.eos_id, spec.pad_id) == (1, 2, 2)
    tok = Tokenizer.from_spec(spec)
    assert tok.encode_batch(HAND_CORPUS) == smol.encode_batch(HAND_CORPUS)


def test_spec_from_tokenizer_json_families(hf_converted):
    obj = json.loads(hf_converted.backend_tokenizer.to_str())
    assert spec_from_tokenizer_json(obj).pre == "gpt2"
    obj["model"]["merges"] = [" ".join(m) for m in obj["model"]["merges"]]  # old "a b" form
    llama3 = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}
    spec = spec_from_tokenizer_json({**obj, "pre_tokenizer": llama3})
    assert spec.pre == "llama3" and spec.merges[0] == "Ġ t"
    with pytest.raises(ValueError, match="Unigram"):
        spec_from_tokenizer_json({"model": {"type": "Unigram"}})


LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
          r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


# ---- a tiny hand-made BPE: the core logic without the model ------------------------------
TINY_MERGES = ["Ġ t", "h e", "Ġt he", "l l", "ll o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld",
               "a a", "aa a", "1 2"]


def tiny_spec(product_ids: str = "in_order", drop_byte: int | None = None) -> TokenizerSpec:
    """256 byte tokens + one token per merge + one special, ids as `product_ids` says."""
    alphabet = byte_to_unicode()
    tokens = [alphabet[b] for b in range(256) if b != drop_byte]
    products = ["".join(m.split(" ")) for m in TINY_MERGES]
    tokens += products if product_ids == "in_order" else products[::-1]
    tokens.append("<|end|>")
    types = [1] * (len(tokens) - 1) + [3]
    return TokenizerSpec(tokens=tokens, merges=TINY_MERGES, pre="gpt2", token_types=types,
                         eos_id=len(tokens) - 1)


def tiny_reference(spec: TokenizerSpec) -> HFTokenizer:
    vocab = {t: i for i, t in enumerate(spec.tokens[:-1])}
    merges = [tuple(m.split(" ")) for m in spec.merges]
    ref = HFTokenizer(models.BPE(vocab, merges))
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return ref


TINY_TEXTS = ["the world", " the hello world", "aaaaaaa a aa", "12123 hello", "théé wörld",
              "", "  the  ", "hello<|end|>world", "x\x04y (\x04)"]


@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_tiny_bpe_matches_hf(order):
    spec = tiny_spec(order)
    tok, ref = Tokenizer.from_spec(spec), tiny_reference(spec)
    for text in TINY_TEXTS:
        assert tok.encode(text) == ref.encode(text).ids, text
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("hello<|end|>", allow_special=True)[-1] == spec.eos_id
    assert (build_tables(spec).rank_to_id is None) == (order == "in_order")


def test_tiny_bpe_missing_byte_is_dropped():
    spec = tiny_spec(drop_byte=ord("x"))
    tok, ref = Tokenizer.from_spec(spec), tiny_reference(spec)
    for text in ["x the xworld", "axa", "hexllo"]:
        assert tok.encode(text) == ref.encode(text).ids, text


def test_tiny_bpe_audit_finds_unreachable_token():
    # "abc" is made by ab+c, but b+c merges first, so the merges never reach "abc";
    # tiktoken would return it whole for the piece "abc".
    alphabet = byte_to_unicode()
    tokens = [alphabet[b] for b in range(256)] + ["bc", "ab", "abc"]
    spec = TokenizerSpec(tokens=tokens, merges=["b c", "a b", "ab c"])
    assert bpe_conflicts(build_tables(spec)) == [b"abc"]
    assert bpe_conflicts(build_tables(tiny_spec())) == []


def test_unknown_pre_falls_back_to_gpt2(caplog):
    spec = tiny_spec()
    spec.pre = "no-such-family"
    assert Tokenizer.from_spec(spec).encode(" the world") == Tokenizer.from_spec(
        tiny_spec()).encode(" the world")
    assert "no-such-family" in caplog.text


def test_bad_merge_is_a_checkpoint_error():
    spec = tiny_spec()
    spec.merges = [*spec.merges, "zz qq"]
    with pytest.raises(ValueError, match="merge 13"):
        Tokenizer.from_spec(spec)
