"""Wall-clock that leaves out the time the process was stopped (SIGSTOP, a suspended laptop), for study costs.

A study on a shared machine gets paused (`kill -STOP` while something else is measured); plain wall-clock would
count the pause as the study's cost. While an `ActiveClock` runs, a daemon thread wakes every `tick` seconds; a
stopped process wakes none of its threads, so a wake-up that comes more than `gap` seconds late marks a stop, and
the lateness is subtracted. Resolution: one tick; a process merely slowed down (threads still scheduled within
`gap`) is timed in full.
"""

import threading
import time


class ActiveClock:
    """`with ActiveClock() as clock: ...`, then `clock.seconds`: the wall-clock of the block less stopped time."""

    def __init__(self, tick: float = 0.5, gap: float = 5.0):
        self.tick, self.gap = tick, gap
        self.stopped = 0.0
        self.seconds = 0.0
        self._done = threading.Event()

    def _watch(self) -> None:
        last, done = time.monotonic(), False
        while not done:  # the last wake-up (at exit) is checked too: a stop just before the block ended counts
            done = self._done.wait(self.tick)
            now = time.monotonic()
            if now - last > self.tick + self.gap:
                self.stopped += now - last - self.tick
            last = now

    def __enter__(self) -> "ActiveClock":
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._start - self.stopped
