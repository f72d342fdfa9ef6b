"""The command-line tools, the top layer with :mod:`gs_onnx.experiment`: ``gs-measure``, ``gs-recover``,
``gs-models``, ``gs-demo`` (one module each), the shared pieces in :mod:`gs_onnx.cli.common`, and ``python -m
gs_onnx``, a group with every command as a subcommand. They parse, call :mod:`gs_onnx.solve` and report.

Bad input ends in one line ``error: <what is wrong>`` on stderr and exit status 2, with nothing written.
"""
from .common import (EXIT_BAD_INPUT, OneLineCommand, OneLineGroup, examples, one_line_errors,
                     version_option)
from .measure import measure_images, measure_main
from .models import models_main
from .recover import recover_main

__all__ = ["EXIT_BAD_INPUT", "OneLineCommand", "OneLineGroup", "examples", "measure_images", "measure_main",
           "models_main", "one_line_errors", "recover_main", "version_option"]
