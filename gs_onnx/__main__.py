"""``python -m gs_onnx``: see :mod:`gs_onnx.cli.main`."""
from .cli.main import main

if __name__ == "__main__":
    main(prog_name="python -m gs_onnx")
