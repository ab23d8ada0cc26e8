"""In-flight (continuous) batching: sequences join a running batch at any step and leave
it as soon as they finish, as vLLM and TGI schedule requests.

`InflightBatch` owns one model's KV cache. `add` queues a prompt; each `step` first
prefills the newcomers that fit (into the next free cache rows, beside the rows already
decoding; in one prefill call where the model's prefill is row-exact), then runs ONE
decode step for every running sequence and samples
each with its own settings. A sequence that finishes (stop token, stop string,
max_tokens, cancel) leaves the batch at the next step: the last running rows move into
the holes (`model.move_rows`), so a step computes running sequences only.

A sequence's tokens are exactly those it gets alone from `engine.generate`: its prefill
runs alone or through a row-exact prefill (each row's arithmetic independent of the
others'), the batched decode kernels give each row bit for bit its single-row result,
and it samples from its own logits with its own generator (seeded `seed`, as row 0 of a
solo call) and its own repetition-penalty history.

When the batch empties, cache row 0 keeps what its last sequence left: a newcomer whose
prompt starts with those tokens (the next turn of the same chat, one user at a time)
prefills only the rest into row 0 (engine/prompt_cache.py: only where that changes no
number; `usage["cached_tokens"]` counts the tokens skipped).

The cache grows on demand (more rows, longer rows; `model.resize_caches` keeps what the
running rows hold) up to `kv_budget_bytes`; a prompt that does not fit beside the running
ones waits until rows leave. The class is not thread-safe: one thread (a scheduler) owns
it and calls `add`, `cancel` and `step`.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.engine.generate import (
    KV_BUDGET_BYTES,
    GenerationResult,
    _plan,
    _Row,
    shared_prefix_length,
)
from llmos_jupyter.engine.generate import _stream_decoder as stream_decoder
from llmos_jupyter.engine.json_constraint import JsonConstraint, vocabulary_bytes
from llmos_jupyter.engine.prompt_cache import Record, common_prefix
from llmos_jupyter.engine.sampling import make_generators, sample
from llmos_jupyter.errors import ConfigError, PromptError

MAX_TOP_LOGPROBS = 20  # OpenAI's limit on top_logprobs
MAX_REJECTIONS = 32  # JSON-constrained draws before taking the most likely valid token


@dataclass
class TokenLogprob:
    """A sampled token's log-probability under the model (raw logits, before sampling
    settings), and the `top` most likely tokens' as (id, logprob), most likely first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(eq=False)
class Sequence:
    """One request in an InflightBatch: its prompt, settings and progress so far.

    `result` is set when the sequence has finished (finish_reason "stop", "length" or
    "cancelled"); `text_so_far` is what has been streamed.
    """

    id: int
    prompt: list[int]
    params: GenerationParams
    max_new: int
    row: _Row
    stop_ids: frozenset[int]  # tokens that end it (none with ignore_eos)
    generator: torch.Generator | None
    seen: torch.Tensor | None  # [1, prompt + max_new] ids for the repetition penalty
    counts: torch.Tensor | None = None  # [1, V] completion counts (presence/frequency)
    top_logprobs: int | None = None  # None: no logprobs; k: the chosen token's and top k
    constraint: JsonConstraint | None = None  # the text must stay a JSON object prefix
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per sampled token
    cancelled: bool = False
    cached: int = 0  # prompt tokens taken from the cache (see InflightBatch._kept)
    result: GenerationResult | None = None
    pieces: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True once the sequence has left the batch with a result."""
        return self.result is not None

    @property
    def need(self) -> int:
        """Cache positions the sequence can occupy: its prompt plus every new token."""
        return len(self.prompt) + self.max_new


class InflightBatch:
    """Continuous batching over one model (see the module docstring).

    model: a Transformer (prefill with `row`, decode_step, move_rows, resize_caches,
    setup_caches); tokenizer: its tokenizer (stop ids, incremental decoding).
    max_rows bounds the sequences decoding together; kv_budget_bytes bounds the cache;
    prefill_tokens bounds the prompt tokens prefilled in one step (at least one prompt is),
    so a crowd of newcomers delays the running sequences' next tokens by a step's worth of
    prefill at a time rather than by all of theirs.
    """

    def __init__(self, model: Any, tokenizer: Any, max_rows: int = 32,
                 kv_budget_bytes: int = KV_BUDGET_BYTES, prefill_tokens: int = 256) -> None:
        c = model.config
        self.model, self.tokenizer = model, tokenizer
        self.max_rows = max_rows
        self.prefill_tokens = prefill_tokens
        self.kv_budget_bytes = kv_budget_bytes
        self.per_token = 2 * c.n_layers * c.n_kv_heads * c.head_dim * model.dtype.itemsize
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # running[i] is in cache row i
        self._ids = itertools.count()
        self._rows = 0  # cache shape (rows, length); (0, 0) before the first prefill
        self._len = 0
        # What cache row 0 still holds after the last sequence left an empty batch (a
        # chat's last turn): the next newcomer, prefilled into row 0, continues it where
        # its prompt starts with those tokens (engine/prompt_cache.py says when that may be).
        self._kept: Record | None = None

    # --- requests ---------------------------------------------------------------------

    def add(self, prompt: list[int], params: GenerationParams,
            top_logprobs: int | None = None, json_object: bool = False) -> Sequence:
        """Queue one prompt (token ids) for generation; it joins the batch at the next step.
        With top_logprobs=k (0 <= k <= 20) every sampled token records its logprob and the
        k most likely tokens' (`Sequence.logprobs`). With json_object=True the answer is
        constrained to a JSON object and ends when the object closes (engine.json_constraint).

        Raises ConfigError for invalid params, PromptError for an empty prompt, ids outside
        the vocabulary, a prompt the context cannot hold, or one larger than the whole
        cache budget.
        """
        params.validate()
        if top_logprobs is not None and not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ConfigError(f"top_logprobs={top_logprobs} must be between 0 and "
                              f"{MAX_TOP_LOGPROBS}")
        prompt = [int(t) for t in prompt]
        max_new = _plan(self.model, [prompt], params)[0]
        if (len(prompt) + max_new) * self.per_token > self.kv_budget_bytes:
            raise PromptError(
                f"prompt of {len(prompt)} tokens + max_tokens {max_new} needs more KV cache "
                f"than this server's budget of {self.kv_budget_bytes >> 20} MiB; shorten "
                "the prompt or lower max_tokens")
        seq = Sequence(
            id=next(self._ids), prompt=prompt, params=params, max_new=max_new,
            row=_Row(len(prompt), max_new, stream_decoder(self.tokenizer), params.stop),
            stop_ids=frozenset() if params.ignore_eos else frozenset(self.tokenizer.stop_ids),
            generator=None if params.greedy else make_generators(params.seed, 1)[0],
            seen=None, top_logprobs=top_logprobs,
            constraint=JsonConstraint(vocabulary_bytes(self.tokenizer)) if json_object else None)
        if params.counts_tokens:
            seq.counts = torch.zeros(1, self.model.config.vocab_size)
        if params.repetition_penalty != 1.0:
            ids = torch.tensor([prompt], dtype=torch.long)
            seq.seen = torch.cat([ids, ids[:, -1:].expand(1, max_new)], dim=1)
        self.waiting.append(seq)
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Stop `seq`: it leaves at the next step with finish_reason "cancelled" and the
        text it has so far. A no-op for a finished sequence."""
        seq.cancelled = True

    @property
    def idle(self) -> bool:
        """True when no sequence is waiting or running."""
        return not self.waiting and not self.running

    # --- the step -----------------------------------------------------------------------

    def step(self) -> list[tuple[Sequence, str]]:
        """Admit newcomers, run one decode step, sample; return the (sequence, text piece)
        pairs produced (pieces concatenate to each sequence's text). Sequences that finish
        get their `result` and leave the batch."""
        out: list[tuple[Sequence, str]] = []
        with torch.inference_mode():
            self._drop_cancelled(out)
            decoding = list(self.running)  # rows with a token to feed
            self._admit(out)
            if decoding:
                self._decode(decoding, out)
            self._leave()
        return out

    def _drop_cancelled(self, out: list[tuple[Sequence, str]]) -> None:
        for seq in [s for s in self.waiting if s.cancelled]:
            self.waiting.remove(seq)
            self._finish(seq, "cancelled", out)
        for seq in self.running:
            if seq.cancelled and seq.result is None:
                self._finish(seq, "cancelled", out)
        self._leave()

    def _admit(self, out: list[tuple[Sequence, str]]) -> None:
        """Prefill waiting sequences (in arrival order) while rows, cache budget and this
        step's prefill budget allow; each samples its first token from its own prefill
        logits. Where the model's prefill is row-exact (`prefill_rows_exact`) the newcomers
        go through together: the prompt prefix they all share (a chat template's system
        prompt) once, copied into their rows, then their tails in one prefill call; the
        budget counts the tokens computed. Otherwise they go one by one."""
        budget = self.prefill_tokens
        admitted: list[Sequence] = []
        exact = None
        while self.waiting and len(self.running) + len(admitted) < self.max_rows:
            seq = self.waiting[0]
            cost = len(seq.prompt)
            if not self.running and not admitted and self._kept is not None:
                cost -= self._kept.reusable(self.model, seq.prompt)
            elif admitted and exact:
                cost -= common_prefix(seq.prompt, admitted[0].prompt)
            if budget < cost and budget < self.prefill_tokens:
                break  # the rest wait for the next step (one prompt always goes in)
            if not self._make_room(len(self.running) + len(admitted) + 1, seq.need, admitted):
                break
            if exact is None:  # the caches exist now: ask the model
                exact = self._rows_exact()
            budget -= cost
            admitted.append(self.waiting.popleft())
        if not admitted:
            return
        if not self.running and self._kept is not None:
            # Room is made (the kept row survives it): now the first newcomer may go on
            # from what row 0 holds.
            admitted[0].cached = self._kept.reusable(self.model, admitted[0].prompt)
        self._kept = None
        groups = [admitted] if exact else [[seq] for seq in admitted]
        if admitted[0].cached and len(admitted) > 1:  # it starts at its own position
            groups = [[admitted[0]], *([admitted[1:]] if exact else groups[1:])]
        for group in groups:
            logits = self._prefill(group, len(self.running))
            self.running += group
            for i, seq in enumerate(group):
                self._take(seq, self._sample(seq, logits[i:i + 1]), out)

    def _rows_exact(self) -> bool:
        exact = getattr(self.model, "prefill_rows_exact", None)
        return exact is not None and exact(self._rows)

    def _prefill(self, group: list[Sequence], row: int) -> torch.Tensor:
        """Prefill `group`'s prompts into cache rows [row, row + len(group)); return their
        last tokens' logits [len(group), V]. Several prompts (a row-exact prefill) share
        their common prefix: it is prefilled once into the first row and copied into the
        others, and only the tails are prefilled per row."""
        prompts = [seq.prompt for seq in group]
        shared = 0
        if group[0].cached:  # alone in its group, into row 0, which holds its first tokens
            shared = group[0].cached
        elif len(group) > 1:  # every row keeps at least its last token to prefill
            shared = shared_prefix_length(prompts)
        device = self.model.device
        if shared and not group[0].cached:
            self.model.prefill(torch.tensor([prompts[0][:shared]], device=device),
                               torch.tensor([shared], device=device), row=row)
            self.model.move_rows([row] * (len(group) - 1), list(range(row + 1, row + len(group))),
                                 shared)
        tails = [p[shared:] for p in prompts]
        ids = torch.zeros(len(tails), max(map(len, tails)), dtype=torch.long)
        for i, tail in enumerate(tails):
            ids[i, :len(tail)] = torch.tensor(tail, dtype=torch.long)
        lengths = torch.tensor([len(t) for t in tails], dtype=torch.long)
        return self.model.prefill(ids.to(device), lengths.to(device), start=shared, row=row)

    def _make_room(self, rows: int, length: int, pending: list[Sequence]) -> bool:
        """Make the cache hold `rows` rows of `length` positions, keeping what running rows
        hold and room for `pending` (admitted this step, not yet prefilled); False when
        that would pass the budget (the sequence waits)."""
        if not self.running and not pending:  # another caller may have reshaped the caches
            self._rows = self._len = 0
        active = self.running + pending
        len_needed = max(length, self._len, *(s.need for s in active))
        if rows <= self._rows and len_needed <= self._len:
            return True
        # Grow to hold everything queued that fits in the batch, where the budget allows:
        # a crowd admitted in one step used to grow the cache 2, 4, 8, 16, 32 rows, each
        # time allocating, zeroing and copying it. Else only what is needed; never past
        # the budget or the context.
        queued = list(itertools.islice(self.waiting, max(self.max_rows - len(active), 0)))
        want_rows = min(max(rows, 2 * self._rows, len(active) + len(queued)), self.max_rows)
        want_len = min(max(len_needed, 2 * self._len if len_needed > self._len else self._len,
                           *(s.need for s in queued)), self.model.config.max_seq_len)
        for new_rows, new_len in ((want_rows, want_len), (rows, want_len), (rows, len_needed)):
            if new_rows * new_len * self.per_token <= self.kv_budget_bytes:
                break
        else:
            return False
        if not self.running and self._kept is not None and not self.model.caches_fit(
                new_rows, new_len):
            keep = min(len(self._kept.tokens), new_len)
            self.model.resize_caches(new_rows, new_len, 1, keep)
            self._kept.tokens[keep:] = []
            self._kept.writes = self.model.cache_writes
        elif not self.running:
            self.model.setup_caches(new_rows, new_len)
        else:
            keep_len = max(len(s.prompt) + len(s.row.token_ids) for s in self.running)
            self.model.resize_caches(new_rows, new_len, len(self.running), keep_len)
        self._rows, self._len = new_rows, new_len
        return True

    def _decode(self, decoding: list[Sequence], out: list[tuple[Sequence, str]]) -> None:
        """One decode step for the sequences in cache rows [0, len(decoding))."""
        device = self.model.device
        tokens = torch.tensor([s.row.token_ids[-1] for s in decoding], device=device)
        positions = torch.tensor([len(s.prompt) + len(s.row.token_ids) - 1 for s in decoding],
                                 dtype=torch.long, device=device)
        logits = self.model.decode_step(tokens, positions)  # (B, V)
        # Plain greedy rows (no penalties, constraint or logprobs) take one argmax over the
        # batch: what `sample` picks for each of them alone.
        plain = [self._plain_greedy(seq) for seq in decoding]
        picked = logits.argmax(dim=-1).tolist() if any(plain) else []
        for i, seq in enumerate(decoding):
            token = picked[i] if plain[i] else self._sample(seq, logits[i:i + 1])
            self._take(seq, token, out)

    @staticmethod
    def _plain_greedy(seq: Sequence) -> bool:
        return (seq.params.temperature == 0 and seq.seen is None and seq.counts is None
                and seq.constraint is None and seq.top_logprobs is None)

    def _sample(self, seq: Sequence, logits: torch.Tensor) -> int:
        token = self._draw(seq, logits)
        if seq.counts is not None:
            seq.counts[0, token] += 1
        if seq.top_logprobs is not None:
            lp = torch.log_softmax(logits[0].float(), dim=-1)  # (V,)
            top = lp.topk(seq.top_logprobs) if seq.top_logprobs else None
            seq.logprobs.append(TokenLogprob(token, float(lp[token]), [] if top is None else
                                             list(zip(top.indices.tolist(), top.values.tolist(),
                                                      strict=True))))
        return token

    def _draw(self, seq: Sequence, logits: torch.Tensor) -> int:
        """Sample seq's next token; under a JSON constraint, a token that would break the
        JSON is masked and the draw repeated (the model's distribution restricted to the
        valid tokens), and after MAX_REJECTIONS the most likely valid token is taken."""
        gens = None if seq.generator is None else [seq.generator]
        if seq.constraint is None:
            return int(sample(logits, seq.params, gens, seq.seen, seq.counts)[0])
        logits = logits.clone()
        for _ in range(MAX_REJECTIONS):
            token = int(sample(logits, seq.params, gens, seq.seen, seq.counts)[0])
            if seq.constraint.allows(token):
                return token
            logits[0, token] = float("-inf")
        order = logits[0].argsort(descending=True).tolist()
        return next(t for t in order if seq.constraint.allows(t))

    def _take(self, seq: Sequence, token: int, out: list[tuple[Sequence, str]]) -> None:
        """Give `seq` its sampled token; emit its text; finish it when it ends."""
        if seq.seen is not None:
            seq.seen[0, len(seq.prompt) + len(seq.row.token_ids)] = token
        piece = seq.row.push(token, seq.stop_ids)
        if seq.constraint is not None:
            seq.constraint.take(token)
            if seq.constraint.done and seq.row.finish_reason is None:
                piece += seq.row.finish("stop")  # the object is closed: nothing may follow
        if piece:
            seq.pieces.append(piece)
            out.append((seq, piece))
        if seq.row.finish_reason is not None:
            seq.result = self._result(seq)

    def _finish(self, seq: Sequence, reason: str, out: list[tuple[Sequence, str]]) -> None:
        piece = seq.row.finish(reason)
        seq.row.finish_reason = reason
        if piece:
            seq.pieces.append(piece)
            out.append((seq, piece))
        seq.result = self._result(seq)

    def _result(self, seq: Sequence) -> GenerationResult:
        n, m = len(seq.prompt), len(seq.row.token_ids)
        return GenerationResult(
            text=seq.row.final_text(self.tokenizer, seq.stop_ids), token_ids=seq.row.token_ids,
            finish_reason=seq.row.finish_reason or "length",
            usage={"prompt_tokens": n, "completion_tokens": m, "total_tokens": n + m,
                   "cached_tokens": seq.cached})

    def _leave(self) -> None:
        """Remove finished sequences from the batch: the last running rows move into the
        holes, so rows [0, len(running)) stay the running ones."""
        alive = [s.result is None for s in self.running]
        if all(alive):
            return
        if not any(alive):  # the batch empties: row 0 keeps its sequence's tokens
            last = self.running[0]
            # Its cache holds the prompt and every sampled token fed back: all but the last.
            self._kept = Record.of(self.model, last.prompt + last.row.token_ids[:-1])
        n = sum(alive)
        holes = [i for i in range(n) if not alive[i]]
        movers = [i for i in range(n, len(self.running)) if alive[i]]
        if movers:
            length = max(len(self.running[i].prompt) + len(self.running[i].row.token_ids)
                         for i in movers)
            self.model.move_rows(movers, holes, length)
        order = list(range(n))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        self.running = [self.running[i] for i in order]

