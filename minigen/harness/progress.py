"""Progress reporting and the Ctrl-C guard of the training loop.

In a terminal: one tqdm bar over the run (loss, steps/s, ETA for --steps and --minutes). When
stderr is not a terminal (a log file, CI) or tqdm is missing: one plain line every ``every``
seconds, never carriage returns, so a log stays readable.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

__all__ = ["Progress", "StopOnInterrupt"]


class Progress:
    """``total`` is steps to reach (None: unknown), or, for a --minutes run, seconds to reach
    with ``unit="s"``; ``update(step, seconds, loss)`` is called with the run's totals."""

    def __init__(self, enabled: bool, log=print, total=None, initial: int = 0,
                 unit: str = "step", every: float = 30.0, stream=None):
        self.log, self.total, self.unit, self.every = log, total, unit, every
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bar = None
        self._last_line = time.perf_counter()
        self._start_step, self._start_time = initial, time.perf_counter()
        self._done = initial
        if not enabled:
            return
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if tty:
            try:
                from tqdm import tqdm
            except ImportError:
                log('(tqdm is not installed: progress comes as a line every '
                    f'{every:g} s; pip install tqdm or "minigen[train]" for a bar)')
            else:
                self.bar = tqdm(total=total, initial=initial if unit == "step" else 0,
                                unit=unit, dynamic_ncols=True, file=self.stream,
                                bar_format=None if unit == "step" else
                                "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}"
                                "{postfix}]")
                if log is print:
                    self.log = self.bar.write

    def update(self, step: int, seconds: float, loss: float | None):
        if not self.enabled:
            return
        if self.bar is not None:
            n = step if self.unit == "step" else min(seconds, self.total or seconds)
            self.bar.update(n - self.bar.n)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every:
            self._last_line = now
            rate = (step - self._start_step) / max(now - self._start_time, 1e-9)
            goal = ("" if self.total is None else
                    f"/{self.total}" if self.unit == "step" else f" ({seconds:.0f}/{self.total:.0f} s)")
            loss_s = "" if loss is None else f"  loss {loss:.4g}"
            print(f"step {step}{goal}{loss_s}  {rate:.2f} steps/s", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step (so the checkpoint holds a
    consistent state); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
