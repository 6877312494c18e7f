"""Evaluation: how good a checkpoint is (`dlm eval`, `dlm sweep`, `dlm compare`).

Likelihood on held-out data (`likelihood`: the objective's bound, or AR's exact NLL),
reply quality under a separately trained judge (`quality`, built on the pure measures of
`metrics`), the sampling sweep (`sweep`), the report of one checkpoint (`report`), two
runs side by side (`compare`) and their plots (`plots`).

May import: config, errors, util, data, tokenizer, model, diffusion, objectives, sampling,
checkpoint, pipeline, suite. Never training, the CLI, the server or the benchmarks.
"""
