"""One list per set of names the configs accept; the modules that implement each
name import the list from here, so the configs import nothing of dlm above them."""

from __future__ import annotations

EOS_MODES = ("allow", "defer", "ban")
COMMIT_RULES = ("low_confidence", "margin", "entropy", "random", "threshold")
"""The commit rules' names; `dlm.sampling.rules.RULES` implements each (a test checks)."""
PREDICTORS = ("tweedie", "euler")
DECODES = ("diffusion", "speculative")  # speculative: a diffusion drafter, an AR verifier
PADDINGS = ("eos", "rainbow", "eos_weight", "batch")
"""How replies are padded (`dlm.diffusion.padding` implements each)."""
