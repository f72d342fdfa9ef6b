"""A minimal progress display on stderr: a bar on a terminal, a line every 10 % otherwise, nothing when
disabled."""
from __future__ import annotations

import sys
import time


class Progress:
    """``update(done, total, msg)``; ``close()`` ends the line. ``enabled=None`` means: only on a terminal."""

    def __init__(self, label: str, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.label, self.last, self.t0 = label, -1, time.perf_counter()

    def update(self, frac: float, msg: str = "") -> None:
        if not self.enabled:
            return
        pct = int(100 * min(1.0, max(0.0, frac)))
        if self.tty:
            bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
            el = time.perf_counter() - self.t0
            self.stream.write(f"\r{self.label} [{bar}] {pct:3d}% {el:6.1f}s {msg}   ")
            self.stream.flush()
        elif pct // 10 != self.last // 10:
            self.stream.write(f"{self.label} {pct:3d}% {msg}\n")
            self.stream.flush()
        self.last = pct

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
