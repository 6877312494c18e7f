"""Block diffusion (BD3-LM, Arriola et al. 2025): masked diffusion inside blocks, blocks
left to right.

A sequence of L tokens is cut into blocks of L'. Each block is noised with its own
time t, and its masked tokens are predicted from the noisy block itself and the
clean blocks before it. Training runs both in one forward over `x_t ⊕ x_0` (2L
tokens, both halves at rotary positions 0..L-1) with the mask:

- x_t block b sees x_t block b (block-diagonal),
- x_t block b sees x_0 blocks < b (offset block-causal),
- x_0 block b sees x_0 blocks <= b (block-causal),

so the clean half computes exactly the keys a sampler caches for finished blocks.
The NELBO is the sum over blocks of each block's MDLM bound, divided by the
maskable tokens like `diffusion_loss`, so the figures compare with MDLM and AR.
"""

from __future__ import annotations

import torch

from dlm.diffusion.corruption import Noise, draw_noise
from dlm.diffusion.loss import Denoiser, LossOutput, subs_log_probs
from dlm.diffusion.schedule import Schedule
from dlm.errors import ConfigError


def check_block_size(block_size: int, lengths: dict[str, int]) -> None:
    """Blocks sit at fixed positions of the canvas, so L' must tile every part of it
    (`lengths`: field name -> tokens). A block straddling the prompt/reply boundary, or
    one cut short at the end, would need alignment padding past the model's positions."""
    total = sum(lengths.values())
    if not 1 <= block_size <= total:
        raise ConfigError(f"block_size must be between 1 and the sequence length {total}, "
                          f"got {block_size}")
    for name, length in lengths.items():
        if length % block_size:
            raise ConfigError(f"block_size {block_size} must divide {name} = {length}: "
                              "blocks tile the sequence at fixed positions")


def align_to_blocks(ids: torch.Tensor, maskable: torch.Tensor,
                    key_padding: torch.Tensor | None, block_size: int,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Pad a batch so the text to predict starts and ends on block boundaries.

    Chat batches are cut to their longest prompt, so the reply starts at a column that
    need not be a multiple of L': padding the prompt on the left (and the end on the
    right) puts the reply's blocks where the sampler puts them, which left-pads the
    prompt the same way. Pads are hidden (key padding) and never predicted.
    """
    B, L = ids.shape
    cols = maskable.any(0).nonzero()
    first = int(cols[0]) if len(cols) else 0
    left, right = -first % block_size, -(L - first) % block_size
    if not left and not right:
        return ids, maskable, key_padding
    real = (key_padding if key_padding is not None
            else torch.ones(B, L, dtype=torch.bool, device=ids.device))

    def pad(x: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (left, right), value=value)
    return pad(ids, 0), pad(maskable, False), pad(real, False)


def block_ids(length: int, block_size: int, device=None) -> torch.Tensor:
    """(length,) the block each position is in."""
    return torch.arange(length, device=device) // block_size


def training_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """(2L, 2L) bool over x_t ⊕ x_0: True where a query may see a key."""
    idx = torch.arange(2 * length, device=device)
    clean = idx >= length
    blk = block_ids(length, block_size, device).repeat(2)
    q_clean, k_clean = clean[:, None], clean[None, :]
    qb, kb = blk[:, None], blk[None, :]
    noisy_own_block = ~q_clean & ~k_clean & (qb == kb)
    noisy_sees_earlier_clean = ~q_clean & k_clean & (kb < qb)
    clean_block_causal = q_clean & k_clean & (kb <= qb)
    return noisy_own_block | noisy_sees_earlier_clean | clean_block_causal


def block_causal_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """(L, L) bool: clean tokens see their own block and every block before it."""
    blk = block_ids(length, block_size, device)
    return blk[None, :] <= blk[:, None]


def flex_training_mask(length: int, block_size: int, key_padding: torch.Tensor | None,
                       device):
    """The same mask as a flex-attention BlockMask (padding folded in), for CUDA kernels
    that skip the fully masked tiles."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q, k):
        q_clean, k_clean = q >= length, k >= length
        qb, kb = (q % length) // block_size, (k % length) // block_size
        allowed = ((~q_clean & ~k_clean & (qb == kb)) | (~q_clean & k_clean & (kb < qb))
                   | (q_clean & k_clean & (kb <= qb)))
        if key_padding is not None:
            allowed = (allowed & key_padding[b, k]) | (q == k)
        return allowed | (q == k)

    batch = None if key_padding is None else key_padding.shape[0]
    return create_block_mask(mask_mod, batch, None, 2 * length, 2 * length, device=device)


def use_flex(device: torch.device) -> bool:
    """Flex attention where it is compiled into fast kernels (CUDA); elsewhere SDPA with the
    explicit mask, which measured faster on CPU (see tests/test_block.py for equality)."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda"


def block_diffusion_loss(
    denoiser: Denoiser, ids: torch.Tensor, maskable: torch.Tensor,
    key_padding: torch.Tensor | None, schedule: Schedule, mask_id: int, block_size: int,
    eps: float = 1e-3, antithetic: bool = True, generator: torch.Generator | None = None,
    flex: bool | None = None, noise: Noise | None = None, normalizer: int | None = None,
) -> LossOutput:
    """One Monte Carlo draw of the BD3-LM NELBO, in nats per maskable token.

    Times are drawn per block, stratified over every block of the batch. With one block
    (block_size = L) the draws, the masks and the loss are exactly MDLM's. The batch is
    first aligned to blocks (`align_to_blocks`); `noise` and `normalizer` are as in
    `diffusion_loss` (drawn for the aligned batch: (B, blocks) times).
    """
    ids, maskable, key_padding = align_to_blocks(ids, maskable, key_padding, block_size)
    B, L = ids.shape
    n_blocks = L // block_size
    if noise is None:
        noise = draw_noise(B, L, eps, antithetic, generator, ids.device, n_blocks)
    t_token = noise.times.repeat_interleave(block_size, dim=1)  # (B, L)
    masked = (noise.mask_draw < schedule.mask_rate(t_token)) & maskable
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    both = torch.cat([noisy, ids], 1)  # (B, 2L): x_t ⊕ x_0
    positions = torch.arange(L, device=ids.device).repeat(2)
    padding = None if key_padding is None else torch.cat([key_padding, key_padding], 1)
    flex = use_flex(ids.device) if flex is None else flex
    if flex:
        mask, padding = flex_training_mask(L, block_size, padding, ids.device), None
    else:
        mask = training_mask(L, block_size, ids.device)
    select = torch.cat([masked, torch.zeros_like(masked)], 1)  # only x_t's masks are scored
    logits = denoiser(both, padding, select, positions=positions, attn_mask=mask)  # (M, V)
    logp = subs_log_probs(logits, mask_id)
    nll = -logp.gather(-1, ids[masked][:, None]).squeeze(-1)  # (M,)
    weighted = nll * schedule.weight(t_token[masked])
    n_tokens = int(maskable.sum())
    return LossOutput(weighted.sum() / max(normalizer or n_tokens, 1), n_tokens,
                      int(masked.sum()))
