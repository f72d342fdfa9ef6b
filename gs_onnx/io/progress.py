"""Progress on stderr through tqdm: a bar with the count done, the rate, the ETA and a status line
(image, restart, iteration, objective); nothing when disabled.

``Progress(label, enabled=None, total=1.0, unit="")``; ``update(done, msg)`` sets the amount done (a float in
``[0, total]``) and the status; ``close()`` completes the bar to 100 %. ``enabled=None`` means: only on a
terminal.
"""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, label: str, enabled: bool | None = None, stream=None, total: float = 1.0, unit: str = ""):
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = tty if enabled is None else bool(enabled)
        self.total = float(total)
        self.bar = None
        if self.enabled:
            from tqdm import tqdm

            fmt = "{desc} {percentage:3.0f}%|{bar}| {n:.2f}/{total:.0f}" + (f" {unit}" if unit else "") + \
                  " [{elapsed}<{remaining}] {postfix}"
            if total == 1.0 and not unit:
                fmt = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}"
            self.bar = tqdm(total=self.total, desc=label, file=self.stream, bar_format=fmt, mininterval=0.5,
                            leave=True, dynamic_ncols=tty, ascii=not tty)

    def update(self, done: float, msg: str = "") -> None:
        if self.bar is None:
            return
        done = min(self.total, max(0.0, float(done)))
        self.bar.n = done
        self.bar.set_postfix_str(msg, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.n = self.total
            self.bar.refresh()
            self.bar.close()
            self.bar = None
