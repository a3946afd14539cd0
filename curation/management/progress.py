"""A text progress bar for management commands, fed by the same numbers the dashboard polls."""

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable `(phase, done, total)` that redraws one line, at most ten times a second."""

    def __init__(self, stream: TextIO | None = None, width: int = 40) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self._phase = None
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self._phase:
            if self._phase is not None:
                self.stream.write("\n")
            self._phase, self._started = phase, now
        elif now - self._last < 0.1 and done < total:
            return
        self._last = now
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "█" * filled + "·" * (self.width - filled)
            rate = done / max(now - self._started, 1e-9)
            eta = (total - done) / rate if rate > 0 else 0
            line = f"{phase:<12} |{bar}| {done:,}/{total:,} ({100 * done / total:5.1f}%) ETA {eta:5.0f}s"
        else:
            line = f"{phase:<12} {done:,}"
        self.stream.write("\r" + line)
        self.stream.flush()

    def close(self) -> None:
        if self._phase is not None:
            self.stream.write("\n")
            self.stream.flush()
