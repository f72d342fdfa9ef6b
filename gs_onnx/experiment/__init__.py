"""Reproducing the paper's experiments: tasks, presets, a resumable results file, local or Ray execution,
and plots (``gs-experiment``; see docs/experiments.md). The top layer with :mod:`gs_onnx.cli`: it runs
methods through :mod:`gs_onnx.solve.methods`, as ``gs-recover`` does."""
from .presets import PAPER_RATIOS, PRESETS, Config
from .results import ResultsFile
from .task import Task, run_task

__all__ = ["Config", "PAPER_RATIOS", "PRESETS", "ResultsFile", "Task", "run_task"]
