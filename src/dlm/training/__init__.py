"""Training: a run from its config to checkpoints (`dlm train`, `dlm distill`).

A run starts (`start`: config, data, model, the bound objective), reads batches
(`batches`), steps the optimizer (`optimizer_step`), evaluates itself on the fixed
validation set (`validation`) and saves atomically (`run_checkpoint`), on one process or
many (`distributed`). `distill` trains a student on a teacher's replies.

May import: config, errors, util, data, tokenizer, model, diffusion, objectives, sampling,
checkpoint, pipeline, evaluation. Never the CLI, the server or the benchmarks.
"""
