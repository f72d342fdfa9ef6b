"""``python -m gs_onnx``: every gs-onnx command as a subcommand (``python -m gs_onnx recover ...`` is
``gs-recover ...``). The torch-side commands (``export``, ``train``) appear when the export extra is installed
and say so in one line when it is not."""
from __future__ import annotations

import sys

import click

from .common import EXIT_BAD_INPUT, OneLineGroup, examples, version_option


class _Lazy(OneLineGroup):
    """Subcommands imported when asked for (gs-experiment pulls in more than the others)."""

    COMMANDS = {
        "measure": ("gs_onnx.cli.measure", "measure_main", "Measure images with a seeded operator."),
        "recover": ("gs_onnx.cli.recover", "recover_main", "Recover images from a measurement file."),
        "models": ("gs_onnx.cli.models", "models_main", "List the installed models and their cuts."),
        "demo": ("gs_onnx.cli.demo", "main", "Measure a bundled face and recover it without and with surgery."),
        "recovery": ("gs_onnx.cli.recovery", "main", "Write one image's whole recovery as one ONNX graph and its inputs."),
        "serve-demo": ("gs_onnx.cli.serve_demo", "main", "Serve the browser demo page and a recovery folder on localhost."),
        "experiment": ("gs_onnx.cli.experiment", "main", "The paper's experiments, one subcommand per figure."),
        "export": ("gs_export.cli", "main", "Export generators to model folders (needs the export extra)."),
        "train": ("gs_export.train", "main", "Train the paper's generators (needs the export extra)."),
    }

    def list_commands(self, ctx):
        return list(self.COMMANDS)

    def format_commands(self, ctx, formatter):
        """The command list from the table above: no subcommand is imported to print it."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in self.COMMANDS.items()])

    def get_command(self, ctx, name):
        if name not in self.COMMANDS:
            return None
        module, attr, short = self.COMMANDS[name]
        try:
            mod = __import__(module, fromlist=[attr])
        except ImportError as e:
            if ctx.resilient_parsing:
                return click.Command(name, help=short, short_help=short)
            click.echo(f"error: {name} needs the export extra (torch): pip install 'gs-onnx[export]' ({e})",
                       err=True)
            sys.exit(EXIT_BAD_INPUT)
        cmd = getattr(mod, attr)
        cmd.short_help = short
        return cmd


@click.group(cls=_Lazy, epilog=examples(
    "python -m gs_onnx models",
    "python -m gs_onnx measure face.jpg --model dcgan --ratio 0.1628",
    "python -m gs_onnx recover --model dcgan --cut 1 meas.npy"))
@version_option
def main():
    """gs-onnx: image recovery with pretrained generators cut at test time (Generator Surgery), on ONNX
    Runtime. Every gs-* command is a subcommand here."""


if __name__ == "__main__":
    main()
