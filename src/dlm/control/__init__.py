"""Control over what diffusion writes: infilling templates, editing spans, constraints.

Each builds a canvas (given tokens + masks) for the one sampler in `dlm.sampling`;
none has a decoding loop of its own.

May import sampling, config, errors and util; never objectives, the pipeline or above.
"""

from dlm.control.constraints import Constraints, apply_constraints
from dlm.control.edit import Edit, edit
from dlm.control.infill import Blank, Infill, infill, parse_template

__all__ = ["Blank", "Constraints", "Edit", "Infill", "apply_constraints", "edit", "infill",
           "parse_template"]
