#!/usr/bin/python3
"""End-to-end M-Bus over a serial line at 300 baud (a standard M-Bus speed) with a silent slave:
one poll waits the whole EN 13757-2 reply timeout, and the watchdog must not restart acquire
for it.

Runs inside tests/harness/serial_ns.sh (ctest does that for names containing "serial"); the
slave (mptest_mbus.Slave) sits on the master side of a pty whose slave is /dev/ttyS0.
Environment: MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import acquire_health, wait_for  # noqa: E402
from mptest_mbus import ADDRESS, Line, Slave, mbus_pipeline  # noqa: E402

CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check


def main():
    line = Line()
    slave = Slave(line.master, ADDRESS)
    p = mbus_pipeline("baud = 300\n", general="watchdog_s = 5")
    try:
        # EN 13757-2 reply timeout at 300 baud: (330 + 11 * 261) / 300 s + 50 ms = 10.7 s,
        # spent inside one mbus_poll::read() without w.progress(): longer than watchdog_s / 2.
        slave.set_mode("silent")
        slave.start()
        run2 = p.run_dir
        p.start()
        t2 = time.monotonic()

        # One poll = SND_NKE timeout + REQ_UD2 timeout, repeated once: about 22.6 s here.
        def settled():
            w = acquire_health(run2)
            if w and (w.get("restarts", 0) > 0 or
                      w.get("counters", {}).get("errors_mb", 0) >= 1):
                return w
            return None
        w = wait_for(settled, 35, 0.3)
        time.sleep(1.0)
        w = acquire_health(run2) or w
        stall = [l.strip() for l in p.log_matching("no progress|restart|heartbeat")]
        check(w is not None and w.get("restarts") == 0 and
              w.get("counters", {}).get("errors_mb", 0) >= 1,
              "300 baud, silent slave (watchdog_s 5): the failed poll is counted, acquire not "
              "restarted by the watchdog (%.1f s)" % (time.monotonic() - t2),
              w and ("restarts %s, info %s; log: %s; acquire/mbus_poll.cpp receive() waits "
                     "the whole reply timeout without w.progress()"
                     % (w.get("restarts"), w.get("info"), stall[:2])))
    finally:
        slave.stop = True
        p.stop()
        line.close()


if __name__ == "__main__":
    sys.exit(mptest.script_main(CK, main, print_tb=True, serial=True))
