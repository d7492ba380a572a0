import os
import signal
import subprocess
import sys
import time

from benchmarks.active_clock import ActiveClock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 8 s of work in short sleeps (one long sleep would end during the stop: its deadline is wall-clock)
TIMED = ("from benchmarks.active_clock import ActiveClock\nimport time\nwith ActiveClock() as c:\n"
         "    for _ in range(80):\n        time.sleep(0.1)\nprint(c.seconds, c.stopped)")


def test_a_block_that_is_not_stopped_is_timed_in_full():
    with ActiveClock(tick=0.05, gap=1.0) as clock:
        time.sleep(0.5)
    assert 0.5 <= clock.seconds < 0.7 and clock.stopped == 0.0


def test_time_stopped_by_sigstop_is_left_out():
    process = subprocess.Popen([sys.executable, "-c", TIMED], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    process.send_signal(signal.SIGSTOP)
    time.sleep(7)  # longer than the clock's 5 s gap
    process.send_signal(signal.SIGCONT)
    seconds, stopped = map(float, process.communicate(timeout=60)[0].split())
    assert 6.0 <= stopped <= 7.5  # the stop, to a tick
    assert 7.5 <= seconds <= 9.5  # the 8 s of work, of about 15 s of wall-clock
