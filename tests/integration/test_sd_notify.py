#!/usr/bin/python3
"""`meterpipe run` under a notification socket, the way systemd runs it with Type=notify and
WatchdogSec=: a real AF_UNIX datagram socket of the test stands in for systemd's.

Checks: STATUS= lines while starting, READY=1 exactly once and only when every worker has sent
a heartbeat, a "running" STATUS= after it, WATCHDOG=1 repeated from the main loop, the workers
do not inherit NOTIFY_SOCKET/WATCHDOG_USEC, STOPPING=1 on SIGTERM and a clean exit.
"""
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import ENV, MP, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check


class NotifySocket:
    """Collects (monotonic time, field, value) of every datagram sent to it."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.items = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self.lock:
                for line in data.decode(errors="replace").splitlines():
                    k, _, v = line.partition("=")
                    self.items.append((now, k, v))

    def values(self, key):
        with self.lock:
            return [(t, v) for t, k, v in self.items if k == key]

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


def worker_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def test_notify():
    d = tempfile.mkdtemp(prefix="mpnotify.", dir="/tmp")
    ns = NotifySocket(os.path.join(d, "notify.sock"))
    sup = None
    try:
        cfg = os.path.join(d, "meterpipe.toml")
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s/run"\nstate_dir = "%s/state"\n'
                    '[[meter]]\nname = "home"\nsource = "simulate"\n'
                    '[upload]\ntarget = "file"\n' % (d, d))
        env = dict(ENV, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000")
        sup = mptest.Supervisor(cfg, start=False)
        sup.start(env=env)

        ready = wait_for(lambda: ns.values("READY"), 60)
        check(ready, "READY=1 arrives", sup.log()[-20:])
        st = sup.status()
        check(st and st["workers"] and
              all(w["last_health_age_s"] is not None for w in st["workers"]),
              "at READY every worker has sent a heartbeat", st)
        statuses = ns.values("STATUS")
        before = [v for t, v in statuses if ready and t <= ready[0][0]]
        # the supervisor's first loop turn comes long before a fresh worker's first heartbeat
        check(any(v.startswith("starting: 0 of ") and "waiting for" in v for v in before),
              "before READY: STATUS=starting: 0 of N workers up; waiting for ...", statuses)
        names = [w["name"] for w in st["workers"]] if st else []
        want = "running: %d workers up (%s)" % (len(names), ", ".join(names))
        check(wait_for(lambda: any(v == want for _, v in ns.values("STATUS")), 30),
              "STATUS=" + want, ns.values("STATUS"))

        pings = wait_for(lambda: len(ns.values("WATCHDOG")) >= 4 and ns.values("WATCHDOG"), 30)
        check(pings, "WATCHDOG=1 keeps coming (WATCHDOG_USEC = 1 s)", ns.values("WATCHDOG"))

        leaked = []
        for w in (st["workers"] if st else []):
            env_w = worker_environ(w["pid"])
            if env_w is None or any(e.startswith(b"NOTIFY_SOCKET=") or
                                    e.startswith(b"WATCHDOG_USEC=") for e in env_w):
                leaked.append(w["name"])
        check(st and not leaked, "workers do not inherit NOTIFY_SOCKET/WATCHDOG_USEC", leaked)

        sup.proc.send_signal(signal.SIGTERM)
        rc = sup.proc.wait(30)
        check(rc == 0, "SIGTERM: exit 0", rc)
        check(ns.values("STOPPING"), "STOPPING=1 on the way out", ns.items[-5:])
        check(len(ns.values("READY")) == 1, "READY=1 sent once", ns.values("READY"))
    finally:
        if sup and sup.proc and sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
        ns.close()
        shutil.rmtree(d, ignore_errors=True)


def main():
    if not os.access(MP, os.X_OK):
        print("FAIL meterpipe not found at %s (set MP_BIN_DIR)" % MP)
        return 1
    ck.run(test_notify)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
