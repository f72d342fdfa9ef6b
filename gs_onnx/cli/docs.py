"""Tables of defaults for the documentation, generated from the code so that the two cannot disagree.

A page marks a generated block with ``<!-- generated: NAME -->`` ... ``<!-- /generated -->``; NAME is a command
(``gs-recover``, ``gs-measure``, ``gs-experiment cs``, ...: its options, defaults and help as a table), ``help
COMMAND`` (the command's ``--help`` as printed, docs/cli.md), ``plans`` (the stopping plan ``--budget auto`` runs
for every shipped model and operator) or ``methods`` (the method ``--method auto`` runs for each). ``python -m gs_onnx.cli.docs
--write docs/methods.md`` rewrites the blocks; ``--check`` (and a test) fails when a page is out of date.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

BLOCK = re.compile(r"(<!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.DOTALL)


def _commands() -> dict[str, click.Command]:
    from .demo import main as demo
    from .experiment import main as experiment
    from .main import main as group
    from .measure import measure_main
    from .models import models_main
    from .recover import recover_main
    from .recovery import main as recovery
    from .serve_demo import main as serve_demo

    out = {"gs-recover": recover_main, "gs-measure": measure_main, "gs-models": models_main, "gs-demo": demo,
           "gs-experiment": experiment, "gs-export recovery": recovery, "python -m gs_onnx serve-demo": serve_demo,
           "python -m gs_onnx": group}
    out.update({f"gs-experiment {name}": cmd for name, cmd in experiment.commands.items()})
    return out


#: The width --help is rendered at in the docs (a terminal's width would make the page depend on who wrote it).
HELP_WIDTH = 100


def help_text(name: str) -> str:
    """``NAME --help`` as the command prints it, in a fenced block."""
    cmd = _commands()[name]
    words = name.split()
    parent = None
    if words[0] == "gs-experiment" and len(words) == 2:
        parent = click.Context(_commands()["gs-experiment"], info_name="gs-experiment")
    settings = {**(cmd.context_settings or {}), "terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH}
    ctx = click.Context(cmd, info_name=words[-1] if parent else name, parent=parent, **settings)
    return "```text\n" + cmd.get_help(ctx).rstrip() + "\n```\n"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def options_table(cmd: click.Command) -> str:
    """One row per option: its flags, its default as click shows it, and its help."""
    # the command's own context settings: click caches the --help option a context makes on the command, and one made
    # without them (help_option_names) would change that command's --help in docs/cli.md rendered after this table
    ctx = click.Context(cmd, info_name=cmd.name, **(cmd.context_settings or {}))
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
        record = p.get_help_record(ctx)  # what --help prints (an option may complete its help when shown)
        help_ = re.sub(r"\s*\[default: [^\]]*\]", "", record[1] if record else (p.help or ""))
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
    if name.startswith("help ") and name[5:] in cmds:
        return help_text(name[5:])
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
