"""The training loss: next-token cross-entropy fused with the LM head.

The full logits of a training batch are large (SmolLM2: 49152 floats per token, 200 KB;
4 x 128 tokens = 100 MB), and `F.cross_entropy` keeps two more tensors that size (its
log-softmax for the backward, then the gradient). Two paths avoid that:

- CPU (and any device without Triton): `fused_linear_cross_entropy` takes the hidden
  states and the head weight instead of logits, as Liger-Kernel's fused linear
  cross-entropy does. Rows go through in chunks, each chunk's logits in vocabulary tiles.
  With a frozen head (LoRA, evaluation) one pass does it all: each tile's logits are
  exponentiated against a running row maximum and folded at once into the gradient of the
  hidden states, online-softmax style (the sum of exps and that gradient are rescaled when
  the maximum grows), so a tile is used while it is still in cache and only one tile is
  ever alive. When the head weight trains too, its gradient needs each row's final
  normalizer first, so a chunk's tiles are kept until its softmax is known (at most one
  chunk of logits alive). The backward just scales the gradients made in the forward.
- CUDA: the head's logits, then our Triton kernel (llmos_kernels.cross_entropy) that
  writes the gradient over the logits in place: one [N, V] tensor instead of three.

Both take `targets` with `ignore_index` for masked positions and return the mean over
the rest (0 when every target is masked).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmos_jupyter.model import native

IGNORE_INDEX = -100
# Rows per chunk when the head trains (its tiles are kept until the chunk's softmax is
# known): 1024 x 49152 float32 logits = 200 MB would be no saving; 256 rows keep a chunk at
# 50 MB for SmolLM2 while the matmuls stay large enough for full BLAS speed.
CHUNK_ROWS = 256
# Rows per chunk with a frozen head (one tile alive, so rows cost little memory): the
# more rows, the fewer times the head weight (SmolLM2: 113 MB) streams from memory.
ONLINE_CHUNK_ROWS = 1024
# Vocabulary columns per logits tile within a chunk (see _logit_tiles).
VOCAB_TILE = 4096
# Tile width of the one-pass path: a [512, 2048] float32 tile (4 MB) stays in the last-level
# cache from its matmul to its use in the gradient; measured on SmolLM2's head at 512 rows,
# 2048 columns edged out 1024 and 4096 and the whole loss + gradient ran ~15% faster than
# the two-pass path's 256 x 4096 tiles.
ONLINE_VOCAB_TILE = 2048


def _chunk_rows(n_rows: int, vocab: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        return max(1, chunk_rows)
    # Keep a chunk's logits near 16M floats whatever the vocabulary (64 MB).
    return max(16, min(CHUNK_ROWS, (1 << 24) // max(vocab, 1)))


class FusedLinearCrossEntropy(torch.autograd.Function):
    """loss = mean CE(hidden @ weight^T, targets); gradients computed in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_rows):
        N = hidden.shape[0]
        V = weight.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_valid = int((targets != ignore_index).sum())
        scale = 1.0 / max(n_valid, 1)  # mean over counted targets; 0 if none
        if not want_w:  # a frozen head: the one-pass path
            total, grad_h = _online_loss_and_grad(hidden, weight, targets, ignore_index,
                                                  scale, want_h, chunk_rows)
            ctx.save_for_backward(grad_h, None)
            return total * scale
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
        w32 = weight.float()
        total = hidden.new_zeros((), dtype=torch.float32)
        step = _chunk_rows(N, V, chunk_rows)
        for start in range(0, N, step):
            h = hidden[start:start + step].float()  # (c, dim)
            t = targets[start:start + step]  # (c,)
            valid = t != ignore_index
            tiles = _logit_tiles(h, w32)
            lse, picked = _lse_and_picked(tiles, torch.where(valid, t, 0))
            total += ((lse - picked) * valid).sum()
            if not (want_h or want_w):
                continue
            # d loss / d logits = (softmax - onehot) * row scale; the scale (1/n on counted
            # rows, 0 elsewhere) goes on the small [c, dim] side of each matmul instead.
            row_scale = (valid.float() * scale)[:, None]  # (c, 1)
            gh = h.new_zeros(h.shape) if want_h else None
            hs = h * row_scale if want_w else None
            for v0, tile in tiles:
                grad = tile.sub_(lse[:, None]).exp_()  # (c, vt): softmax, in place
                hit, col = _in_tile(t.where(valid, -1), v0, grad.shape[1])
                grad.scatter_add_(1, col[:, None], -hit.float()[:, None])
                if want_h:
                    gh.addmm_(grad, w32[v0:v0 + grad.shape[1]])  # (c, dim)
                if want_w:
                    grad_w[v0:v0 + grad.shape[1]].addmm_(grad.t(), hs)  # (vt, dim)
            del tiles, grad
            if want_h:
                grad_h[start:start + step] = (gh * row_scale).to(hidden.dtype)
        ctx.save_for_backward(grad_h if want_h else None,
                              grad_w.to(weight.dtype) if want_w else None)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None and grad_out.item() != 1.0:  # loss.backward() passes 1
            grad_h = grad_h * grad_out
        if grad_w is not None and grad_out.item() != 1.0:
            grad_w = grad_w * grad_out
        return grad_h, grad_w, None, None, None


def _online_loss_and_grad(hidden, weight, targets, ignore_index, scale, want_h,
                          chunk_rows):
    """(sum of the counted rows' losses, d mean loss / d hidden or None) with the head
    weight frozen, in one pass over each chunk's logits tiles.

    Per row, with m the running maximum: s = sum exp(logit - m) and g = sum exp(logit - m)
    * w_v over the tiles so far; a tile with a larger maximum rescales both by
    exp(m_old - m_new). At the end lse = m + log s and d loss / d h = g exp(m - lse) -
    w_target, the gradient of softmax - onehot folded through the head."""
    N, V = hidden.shape[0], weight.shape[0]
    w32 = weight.float()
    total = hidden.new_zeros((), dtype=torch.float32)
    grad_h = torch.empty_like(hidden) if want_h else None
    step = max(1, chunk_rows) if chunk_rows is not None else ONLINE_CHUNK_ROWS
    for start in range(0, N, step):
        h = hidden[start:start + step].float()  # (c, dim)
        t = targets[start:start + step]  # (c,)
        valid = t != ignore_index
        t_in = t.where(valid, -1)
        picked = h.new_zeros(h.shape[0])
        m = h.new_full((h.shape[0], 1), float("-inf"))  # running row maximum
        s = h.new_zeros((h.shape[0], 1))  # sum of exp(logit - m)
        rescale = h.new_empty((h.shape[0], 1))
        g = h.new_zeros(h.shape) if want_h else None  # sum of exp(logit - m) * w_v
        for v0 in range(0, V, ONLINE_VOCAB_TILE):
            w_tile = w32[v0:v0 + ONLINE_VOCAB_TILE]
            x = h @ w_tile.t()  # (c, vt) logits
            hit, col = _in_tile(t_in, v0, x.shape[1])
            picked += x.gather(1, col[:, None]).squeeze(1) * hit
            _online_softmax(x, m, s, rescale)
            if want_h:
                g.mul_(rescale).addmm_(x, w_tile)
        lse = s.log_().add_(m)  # (c, 1)
        total += ((lse.squeeze(1) - picked) * valid).sum()
        if want_h:
            # Row scale: 1/n on counted rows, 0 elsewhere (so masked rows get no gradient).
            row_scale = (valid.float() * scale)[:, None]
            g.mul_((m - lse).exp_()).sub_(w32.index_select(0, t.where(valid, 0)))
            grad_h[start:start + step] = (g * row_scale).to(hidden.dtype)
    return total, grad_h


def _online_softmax(x: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                    rescale: torch.Tensor) -> None:
    """One logits tile x [c, vt] of the online softmax, all in place: m' = max(m, row max),
    x <- exp(x - m'), rescale = exp(m - m') (0 on the first tile, where m = -inf),
    s <- s * rescale + row sums of x, m <- m'. On CPU in float32 one pass over x (the
    training kernels); torch's ops take four."""
    so = native.train_lib() if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if so is not None and x.is_contiguous():
        so.llmos_online_softmax(x.data_ptr(), x.shape[0], x.shape[1], m.data_ptr(),
                                s.data_ptr(), rescale.data_ptr(), torch.get_num_threads())
        return
    m_new = torch.maximum(m, x.amax(1, keepdim=True))
    torch.sub(m, m_new, out=rescale).exp_()  # exp(-inf) = 0 on the first tile
    x.sub_(m_new).exp_()
    s.mul_(rescale).add_(x.sum(1, keepdim=True))
    m.copy_(m_new)


def _logit_tiles(h: torch.Tensor, w32: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """The logits h @ w32^T as (first vocabulary id, [c, vt] tile) pairs. Tiles of
    VOCAB_TILE columns: on CPU these matmuls run faster than one [c, V] product (MKL
    measured ~20% on SmolLM2's head), and each tile's later passes stay in cache."""
    return [(v0, h @ w32[v0:v0 + VOCAB_TILE].t()) for v0 in range(0, w32.shape[0], VOCAB_TILE)]


def _in_tile(t: torch.Tensor, v0: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(whether target t falls in tile [v0, v0 + width), its column there or 0)."""
    col = t - v0
    hit = (col >= 0) & (col < width)
    return hit, torch.where(hit, col, 0)


def _lse_and_picked(tiles: list[tuple[int, torch.Tensor]],
                    t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: logsumexp over every tile's logits, and the logit of target t."""
    lse = torch.logsumexp(torch.stack([torch.logsumexp(x, dim=1) for _, x in tiles], 1), 1)
    picked = torch.zeros_like(lse)
    for v0, x in tiles:
        hit, col = _in_tile(t, v0, x.shape[1])
        picked += x.gather(1, col[:, None]).squeeze(1) * hit
    return lse, picked


def fused_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX, chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of logits hidden @ weight^T against targets, chunk by chunk.

    hidden [N, dim] (any float dtype), weight [V, dim], targets [N] integer (ignore_index
    masks a row). Returns a float32 scalar, differentiable in hidden and weight; neither
    the full [N, V] logits nor their gradient is ever materialized.
    Raises ValueError for mismatched shapes or targets outside [0, V).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"fused_linear_cross_entropy: hidden {tuple(hidden.shape)} and "
                         f"weight {tuple(weight.shape)} must be [N, dim] and [V, dim]")
    if targets.shape != (hidden.shape[0],):
        raise ValueError(f"fused_linear_cross_entropy: targets {tuple(targets.shape)} must "
                         f"be [{hidden.shape[0]}]")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bool(bad.any()):
        raise ValueError(f"fused_linear_cross_entropy: target {int(targets[bad][0])} is "
                         f"outside the vocabulary [0, {weight.shape[0]})")
    return FusedLinearCrossEntropy.apply(hidden, weight, targets.long(), int(ignore_index),
                                         chunk_rows)


def head_weight(model: torch.nn.Module) -> torch.Tensor:
    """The dense LM head weight [V, dim] of our Transformer (the embedding when tied)."""
    if model.config.tie_embeddings:
        return model.tok_embeddings.weight
    return model.output.weight


def labelled_positions(targets: torch.Tensor,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor | None:
    """Indices of the counted targets in targets [N], or None when every one counts (or
    none does: all rows are then kept, the loss being 0 either way).

    A masked position (a prompt token of instruction or chat data, padding) adds nothing
    to the mean loss nor to any gradient, yet its logits cost a [dim] x [V] product each
    way (SmolLM2: a fifth of the forward's FLOPs): lm_loss runs the head on these rows
    only, which leaves the loss and every gradient as they were."""
    counted = targets != ignore_index
    if bool(counted.all()) or not bool(counted.any()):
        return None
    return counted.nonzero().squeeze(1)


def lm_loss(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor,
            ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean next-token loss of our Transformer: ids [B, T] -> logits, targets [B, T]
    (already shifted: targets[b, t] is the token after ids[b, t]; ignore_index masks).

    Only labelled positions reach the last block's output projection and MLP, the final
    norm and the LM head (`labelled_positions`, `Transformer.hidden_states`): a masked
    position's state matters to the loss only as keys and values. On CUDA the Triton
    kernel; elsewhere the fused chunked path (see the module docstring).
    """
    targets = targets.reshape(-1).to(ids.device)
    rows = labelled_positions(targets, ignore_index)
    hidden = model.hidden_states(ids, rows)  # (B, T, dim) or (len(rows), dim), normed
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (N, dim)
    if rows is not None:
        targets = targets.index_select(0, rows)
    weight = head_weight(model)
    if hidden.device.type == "cuda":
        from llmos_kernels import cross_entropy

        logits = F.linear(hidden, weight.to(hidden.dtype))  # (B*T, V)
        return cross_entropy(logits, targets, ignore_index=ignore_index).float()
    return fused_linear_cross_entropy(hidden, weight, targets, ignore_index)
