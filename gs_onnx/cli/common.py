"""What every command shares: one-line errors, ``-h``, ``--version``, ``-q/-v`` logging, examples at the end of
``--help`` (the provenance every output file records is :func:`gs_onnx._version.provenance`).

Bad input ends in one line ``error: <what is wrong>`` on stderr and exit status 2, with nothing written.
"""
from __future__ import annotations

import functools
import logging
import sys

import click

from .._version import __version__
from ..errors import GSError

EXIT_BAD_INPUT = 2
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 110}


class _OneLineMain:
    """Usage errors (bad option values, wrong paths) print one ``error:`` line and exit 2."""

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:  # pragma: no cover - click >= 8.2 only
            click.echo(e.ctx.get_help())
            sys.exit(EXIT_BAD_INPUT)
        except click.UsageError as e:
            click.echo(f"error: {e.format_message().splitlines()[0]}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


class OneLineCommand(_OneLineMain, click.Command):
    """A click command whose usage errors print one ``error:`` line; ``-h`` works; defaults are shown."""

    def __init__(self, *a, **kw):
        kw.setdefault("context_settings", CONTEXT)
        super().__init__(*a, **kw)


class OneLineGroup(_OneLineMain, click.Group):
    """A click group whose usage errors print one ``error:`` line."""

    def __init__(self, *a, **kw):
        kw.setdefault("context_settings", CONTEXT)
        super().__init__(*a, **kw)


def one_line_errors(fn):
    """Turn GSError (and a few OS errors) into ``error: ...`` + exit 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except GSError as e:
            click.echo(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except MemoryError:
            click.echo("error: out of memory (try a smaller m or batch)", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def examples(*lines: str) -> str:
    """An epilog for ``--help``: runnable examples, one per line (click keeps ``\\b`` blocks unwrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)


def version_option(f):
    return click.version_option(__version__, "--version", package_name="gs-onnx",
                                message="%(prog)s (gs-onnx) %(version)s")(f)


def verbosity_options(f):
    """``-q/--quiet`` (errors only, no progress) and ``-v/--verbose`` (the library's log lines)."""
    f = click.option("-v", "--verbose", count=True, help="More log lines (-vv: debug).")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Only errors: no progress bar, no result lines.")(f)
    return f


def setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("gs_onnx").setLevel(level)


def output_option(help: str, default=None, dir_okay=True, file_okay=True):
    return click.option("-o", "--output", "output", type=click.Path(dir_okay=dir_okay, file_okay=file_okay),
                        default=default, show_default=default is not None, help=help)


def models_dir_option(f):
    return click.option("--models-dir", type=click.Path(file_okay=False), default=None,
                        help="Folder of models searched first (then $GS_ONNX_MODELS, then the shipped ones).")(f)
