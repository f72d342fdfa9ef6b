"""The README is a front page: at most 200 lines, a recovery picture in its first 40, every link and picture it
names present, every PSNR it quotes found in docs/results.md or docs/benchmarks.md (where the command that
measured it is)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_short_with_a_picture_at_the_top():
    lines = README.splitlines()
    assert len(lines) <= 200, len(lines)
    first = "\n".join(lines[:40])
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", first, re.S)
    assert pictures, "no picture in the README's first 40 lines"
    assert (ROOT / pictures[0]).is_file()


def test_every_link_is_there():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, missing


def test_every_psnr_in_the_readme_is_in_the_results_pages():
    pages = "".join((ROOT / "docs" / p).read_text(encoding="utf-8") for p in ("results.md", "benchmarks.md"))
    quoted = re.findall(r"(\d+\.\d+) dB", README)
    assert all(q in pages for q in quoted), [q for q in quoted if q not in pages]
