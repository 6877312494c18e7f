"""How a reply is padded to the canvas, and what each choice makes the loss bound.

LLaDA pads every reply with eos up to the canvas and keeps the padding in the loss,
so the model learns where to stop. On short replies most of the canvas is padding,
eos becomes the surest prediction at every position, low-confidence decoding commits
it first, and replies shrink to nothing ("eos overflow"). The modes:

- `eos`: LLaDA's recipe. The NELBO bounds -log p(reply + eos padding) per canvas token.
- `rainbow` (Rainbow Padding): one eos ends the reply, then the pads cycle through K
  distinct tokens. Which pad sits where depends on the reply's length, so no single
  pad is a sure bet and the probability mass of the padding is split K ways. The
  NELBO bounds -log p(reply + its pad cycle), the cycle being fixed by the length.
- `eos_weight` (DreamOn): eos padding as in `eos`, but in the training loss the
  padding after the closing eos weighs one token in all. The weighted training loss
  is not a bound; validation scores it unweighted, as `eos`.
- `batch`: replies are padded only to the longest reply of a batch of similar
  lengths (batches are grouped by length), so little padding is left to overflow.
  The NELBO bounds -log p(reply + padding to that batch's width).

In every mode the padding is a fixed function of the reply (and the canvas width), so
the whole canvas's NELBO divided by the reply's own tokens (its text and closing eos)
bounds -log p(reply) per reply token: `reply_tokens` gives that normaliser, and it is
the figure that compares across modes (and with AR's exact NLL of the same tokens).
"""

from __future__ import annotations

import torch


def reply_lengths(responses: torch.Tensor, end_ids: torch.Tensor | list[int]) -> torch.Tensor:
    """(B,) tokens before the first end token (eos or a rainbow pad) of each (B, R) row;
    R when there is none (a reply cut to the canvas)."""
    ends = torch.isin(responses, torch.as_tensor(end_ids, device=responses.device))
    before = ends.int().cumsum(1) == 0  # (B, R) True until the first end token
    return before.sum(1)


def rainbow(responses: torch.Tensor, eos_id: int, pad_ids: list[int]) -> torch.Tensor:
    """Rows of (B, R) eos-padded replies with everything after the first eos replaced by
    the cycle pad_0, pad_1, ..., pad_{K-1}, pad_0, ..."""
    R = responses.shape[1]
    is_eos = responses == eos_id
    seen = is_eos.int().cumsum(1)  # (B, R) eos seen so far, this position included
    after = (seen > 1) | ((seen == 1) & ~is_eos)  # past the closing eos
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), R)  # (B,)
    distance = torch.arange(R, device=responses.device)[None, :] - first[:, None] - 1
    cycle = torch.as_tensor(pad_ids, device=responses.device)[distance.clamp(min=0)
                                                              % len(pad_ids)]
    return torch.where(after, cycle, responses)


def padding_weights(responses: torch.Tensor, maskable: torch.Tensor, eos_id: int,
                    ) -> torch.Tensor:
    """(B, T) loss weight of each position for `eos_weight`: 1 on the reply and its closing
    eos, 1/n on each of the n padding tokens after it (together one token), 0 off the
    maskable positions. `responses` is the (B, T) ids, the reply in its maskable columns."""
    is_eos = (responses == eos_id) & maskable
    seen = is_eos.int().cumsum(1)
    padding = maskable & ((seen > 1) | ((seen == 1) & ~is_eos))  # after the closing eos
    n_pad = padding.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
    weights = maskable.float()
    return torch.where(padding, 1.0 / n_pad, weights)


def trim_to_longest(responses: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, R) -> (B, W): the canvas cut to the longest reply of the batch and its closing
    eos (W <= R), so the batch holds no more padding than its longest reply needs."""
    longest = int(reply_lengths(responses, [eos_id]).max())
    return responses[:, : min(longest + 1, responses.shape[1])]


def group_by_length(order: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                    generator: torch.Generator, pool: int = 50) -> torch.Tensor:
    """Reorder a permutation so each run of `batch_size` holds replies of similar length:
    pools of `pool` batches are sorted by length and cut into batches, and the batches
    of a pool are shuffled (so the long ones are not all at the end)."""
    out = []
    span = batch_size * pool
    for lo in range(0, len(order), span):
        chunk = order[lo : lo + span]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches = list(chunk.split(batch_size))
        # a short last batch stays last, so every batch read off the order stays whole
        full = [b for b in batches if len(b) == batch_size]
        out += [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        out += [b for b in batches if len(b) < batch_size]
    return torch.cat(out) if out else order
