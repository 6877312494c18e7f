"""`dlm distill`'s settings (`DistillConfig`): the data, the teacher, and how the teacher
replies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DistillConfig:
    """`dlm distill`: replace every reply of a chat directory by a teacher model's own.
    The teacher replies with its default decoding (`lm.decoding()`: for an AR teacher, the
    decoding it verifies drafts with), over which the fields set here apply."""

    data: str
    """A `dlm data` directory of chat examples."""
    teacher: str
    """The checkpoint whose replies replace the data's (usually the AR verifier a drafter
    will serve)."""
    out_dir: str
    """Output directory: a `dlm data` directory again (`dlm train --data OUT`)."""
    length: int | None = None
    """Longest teacher reply in tokens (none: the teacher's default decoding's, its
    canvas)."""
    temperature: float | None = None
    """The teacher's temperature (none: its default decoding's, greedy)."""
    repetition_penalty: float | None = None
    """The teacher's repetition penalty (none: its default decoding's; use the decoding
    it will verify with)."""
    seed: int = 0
    """Seed of the teacher's sampling (temperature > 0) and of the examples drawn, so a
    distilled directory can be made again."""
    batch_size: int = 64
    """Replies per teacher call."""
    max_examples: int | None = None
    """Distill N training examples drawn with the seed, spread over every source (none:
    all)."""
    max_validation: int | None = None
    """Distill N validation examples drawn with the seed (none: all)."""
    human_share: float = 0.0
    """Write other examples (drawn with the seed) with their human reply beside the
    distilled ones, this share of the whole (0.5: as many as distilled). 0: only the
    teacher's replies."""
    dtype: str = "float32"
    """The teacher's weights: float32 or bfloat16 (use the precision it will verify in)."""
