import os
import signal
import subprocess
import sys
import time

from jaxrep.run.active_clock import ActiveClock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 2 s of work in short sleeps (one long sleep would end during the stop: its deadline is wall-clock)
TIMED = ("from jaxrep.run.active_clock import ActiveClock\nimport time\nwith ActiveClock(tick=0.1, gap=1.0) as c:\n"
         "    print('started', flush=True)\n    for _ in range(40):\n        time.sleep(0.05)\nprint(c.seconds, c.stopped)")


def test_a_block_that_is_not_stopped_is_timed_in_full():
    with ActiveClock(tick=0.05, gap=1.0) as clock:
        time.sleep(0.5)
    assert 0.5 <= clock.seconds < 0.7 and clock.stopped == 0.0


def test_time_stopped_by_sigstop_is_left_out():
    process = subprocess.Popen([sys.executable, "-c", TIMED], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "started\n"
    time.sleep(1.0)
    process.send_signal(signal.SIGSTOP)
    time.sleep(2.5)  # longer than the clock's 1 s gap
    process.send_signal(signal.SIGCONT)
    seconds, stopped = map(float, process.communicate(timeout=60)[0].split())
    assert 2.2 <= stopped <= 2.7  # the stop, to a tick
    assert 1.9 <= seconds <= 2.8  # the 2 s of work (and the clock's start), of about 4.5 s of wall-clock
