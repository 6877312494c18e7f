"""Benchmarks behind `dlm bench`: training throughput and MFU, generation speed of
diffusion against the AR baseline, the training loader, and a peer project side by side.

May import every part but the CLI; nothing but the CLI imports it.
"""

from dlm.bench.generation import bench_generation
from dlm.bench.report import BenchReport
from dlm.bench.run import run_bench
from dlm.bench.speculative import bench_speculative
from dlm.bench.training import bench_training, flops_per_token, matmul_peak

__all__ = ["BenchReport", "bench_generation", "bench_speculative", "bench_training",
           "flops_per_token",
           "matmul_peak", "run_bench"]
