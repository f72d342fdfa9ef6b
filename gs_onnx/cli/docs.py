"""Tables of defaults for the documentation, generated from the code so that the two cannot disagree.

A page marks a generated block with ``<!-- generated: NAME -->`` ... ``<!-- /generated -->``; NAME is a command
(``gs-recover``, ``gs-measure``, ``gs-experiment cs``, ...: its options, defaults and help), ``plans`` (the
stopping plan ``--budget auto`` runs for every shipped model and operator) or ``methods`` (the method
``--method auto`` runs for each). ``python -m gs_onnx.cli.docs
--write docs/methods.md`` rewrites the blocks; ``--check`` (and a test) fails when a page is out of date.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

BLOCK = re.compile(r"(<!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.DOTALL)


def _commands() -> dict[str, click.Command]:
    from .experiment import main as experiment
    from .measure import measure_main
    from .models import models_main
    from .recover import recover_main

    out = {"gs-recover": recover_main, "gs-measure": measure_main, "gs-models": models_main}
    out.update({f"gs-experiment {name}": cmd for name, cmd in experiment.commands.items()})
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def options_table(cmd: click.Command) -> str:
    """One row per option: its flags, its default as click shows it, and its help."""
    ctx = click.Context(cmd, info_name=cmd.name)
    rows = ["| option | default | what |", "|---|---|---|"]
    for p in cmd.get_params(ctx):
        if not isinstance(p, click.Option) or p.hidden or {"--help", "--version"} & set(p.opts):
            continue
        flags = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
        if isinstance(p.show_default, str):
            default = p.show_default
        elif p.is_flag and not p.secondary_opts:
            default = "off"
        elif p.multiple or p.default is None or p.default == ():
            m = re.search(r"\[default: ([^\]]*)\]", p.help or "")
            default = m.group(1) if m else "-"
        elif p.is_flag:
            default = p.opts[0] if p.default else p.secondary_opts[0]
        else:
            default = f"`{p.default}`"
        help_ = re.sub(r"\s*\[default: [^\]]*\]", "", p.help or "")
        rows.append(f"| {flags} | {_cell(default)} | {_cell(help_)} |")
    return "\n".join(rows) + "\n"


def _shipped():
    """(name, manifest) of every shipped model, by name (checksums not verified: only the manifest is read)."""
    from ..generator import registry

    for name, folder in sorted(registry.available().items()):
        if Path(folder).parent == registry.SHIPPED:
            yield name, registry.load(name, verify=False)


def methods_table() -> str:
    """The method ``gs-recover --method auto`` (the default) runs per shipped model (rows) and operator type
    (columns), with gs-tv's weights where they are the model's own."""
    from ..physics import measuring_types
    from ..solve.registry import recommended_method

    types = list(measuring_types())
    rows = ["| model | " + " | ".join(types) + " |", "|---" * (len(types) + 1) + "|"]
    for name, man in _shipped():
        own = man.recommended.get("gs_tv") or {}
        cells = []
        for t in types:
            m = recommended_method(man.recommended, t)
            w = [f"{k} {own[k][t]:g}" for k in ("lam", "gamma") if t in (own.get(k) or {})]
            cells.append(m + (f" ({', '.join(w)})" if w and m == "gs-tv" else ""))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plans_table() -> str:
    """The budget ``--budget auto`` runs per shipped model (rows) and operator type (columns)."""
    from ..physics import measuring_types
    from ..solve.stopping import stopping_plan

    types = list(measuring_types())
    rows = ["| model | " + " | ".join(types) + " |", "|---" * (len(types) + 1) + "|"]
    for name, man in _shipped():
        cells = []
        for t in types:
            p = stopping_plan(man.recommended, t)
            words = f"{p['restarts']} x {p['max_iter']}"
            if p["rule"] != "fixed":
                words = f"{p['rule']} {p['holdout']:g}, patience {p['patience']}, {p['restarts']} x <= {p['max_iter']}"
            cells.append(words)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def generate(name: str) -> str:
    if name == "plans":
        return plans_table()
    if name == "methods":
        return methods_table()
    cmds = _commands()
    if name not in cmds:
        raise KeyError(f"unknown generated block {name!r}: one of plans, methods, {', '.join(cmds)}")
    return options_table(cmds[name])


def render(text: str) -> str:
    """``text`` with every generated block filled anew."""
    return BLOCK.sub(lambda m: m.group(1) + generate(m.group("name")) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("--check", "--write"):
        print("usage: python -m gs_onnx.cli.docs --check|--write PAGE.md ...", file=sys.stderr)
        return 2
    stale = []
    for page in argv[1:]:
        p = Path(page)
        old = p.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            if argv[0] == "--write":
                p.write_text(new, encoding="utf-8")
                print(f"wrote {p}")
            else:
                stale.append(page)
    for page in stale:
        print(f"{page}: generated tables are out of date (python -m gs_onnx.cli.docs --write {page})",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
