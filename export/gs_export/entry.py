"""Console entry points of the torch side (``gs-export``, ``gs-train``): on an install without the export
extra they end with one line naming it instead of an ImportError traceback."""
from __future__ import annotations

import sys


def _need(cmd: str) -> None:
    missing = []
    for mod in ("torch", "onnx", "onnxscript"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing and not {"--version", "-h", "--help"} & set(sys.argv[1:]):
        print(f"error: {cmd} needs the export extra ({', '.join(missing)} missing): pip install 'gs-onnx[export]'",
              file=sys.stderr)
        sys.exit(2)


def export_main() -> None:
    if sys.argv[1:2] == ["recovery"]:  # torch-free: the recovery graph is built from a model folder
        from gs_onnx.cli.recovery import main as recovery

        recovery(args=sys.argv[2:], prog_name="gs-export recovery")
        return
    _need("gs-export")
    from .cli import main

    main()


def train_main() -> None:
    _need("gs-train")
    if sys.argv[1:2] == ["denoiser"]:  # the denoiser prior of --method pnp (gs_export.denoiser)
        from .denoiser import main as denoiser

        denoiser(args=sys.argv[2:])
        return
    from .train import main

    main()
