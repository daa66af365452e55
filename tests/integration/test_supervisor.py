#!/usr/bin/python3
"""Integration test of `meterpipe run` (supervisor) with real worker processes.

Environment (set by ctest): MP_BIN_DIR = the build's bin dir (meterpipe, meterpipe-<worker>).
Every run uses its own temporary run_dir under /tmp. Prints one line per check and a summary
`N passed, M failed`; exits 1 on any failure.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import ENV, MP, alive, procs_using, wait_for  # noqa: E402

BIN = mptest.BIN_DIR
WATCHDOG_S = 2

ck = mptest.Checker(handle_signals=False, max_detail=None)
check = ck.check
started = []  # every Popen we started, to clean up


def ppid_of(pid):
    st = mptest.proc_stat(pid)
    try:
        return int(st[1])
    except (TypeError, ValueError, IndexError):
        return -1


class Dir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="mps.", dir="/tmp")

    def config(self, watchdog_s=WATCHDOG_S, run_dir=None, extra=""):
        run_dir = run_dir or os.path.join(self.path, "run")
        cfg = os.path.join(self.path, "meterpipe.toml")
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\nwatchdog_s = %s\n%s\n'
                    '[[meter]]\nname = "home"\nsource = "simulate"\n'
                    % (run_dir, os.path.join(self.path, "state"), watchdog_s, extra))
        return cfg

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def Supervisor(cfg, args=()):
    """`meterpipe run` with its stderr collected line by line (with arrival times)."""
    sup = mptest.Supervisor(cfg, args)
    started.append(sup.proc)
    return sup


def run_cli(args, timeout=15):
    return mptest.run_cli(args, timeout=timeout)


def no_crash_text(s):
    return mptest.no_crash_text(s, sanitizer=False)


# ---------------------------------------------------------------------------------------------
def test_running_supervisor():
    d = Dir()
    cfg = d.config()
    sup = Supervisor(cfg)
    try:
        st = wait_for(sup.all_running, 20)
        if not check(st is not None, "status --json: every worker running with a heartbeat",
                     sup.status()):
            return
        names = [w["name"] for w in st["workers"]]
        check(names == ["acquire", "process", "upload", "history"],
              "workers are acquire, process, upload, history", names)
        check(st["supervisor_pid"] == sup.proc.pid, "status names the supervisor pid",
              st["supervisor_pid"])
        check(st["config"] == cfg, "status names the config file", st["config"])
        for w in st["workers"]:
            check(alive(w["pid"]) and ppid_of(w["pid"]) == sup.proc.pid,
                  "%s pid %d is a live child of the supervisor" % (w["name"], w["pid"]))
            check(w["restarts"] == 0 and w["last_health_age_s"] < 1.6,
                  "%s: no restart, fresh health" % w["name"], w)
        r = run_cli(["status", "-c", cfg])
        out = r.stdout.decode()
        check(r.returncode == 0 and all(re.search(r"^%s\s+%d\s+running" % (w["name"], w["pid"]),
                                                  out, re.M) for w in st["workers"]),
              "status (table) lists every worker with pid and state", out)

        # --- kill -9 a worker: new pid within 1 s, health resumes
        old = {w["name"]: w["pid"] for w in st["workers"]}
        t0 = time.monotonic()
        os.kill(old["acquire"], signal.SIGKILL)

        def new_acquire():
            w = sup.worker("acquire")
            return w if w and (w["pid"] or 0) > 0 and w["pid"] != old["acquire"] else None

        # the delay itself (0.1 s for a first restart) is checked in the log line below; the
        # wall time adds the scheduling of a loaded machine (1.42 s seen under ASan)
        w = wait_for(new_acquire, 10, 0.02)
        dt = time.monotonic() - t0
        check(w is not None and dt <= 3.0, "kill -9 acquire: new pid within 3 s (%.2f s)" % dt, w)
        if w:
            check(w["restarts"] == 1 and w["last_exit"] == "killed by signal 9 (Killed)",
                  "restart counted and last_exit names signal 9", w)
            check(alive(w["pid"]), "new acquire pid is alive")
            pid = w["pid"]

            def fresh():
                x = sup.worker("acquire")
                return (x if x and x["pid"] == pid and x["last_health_age_s"] is not None
                        and x["last_health_age_s"] < 1.2 else None)

            h = wait_for(fresh, 15, 0.1)
            check(h is not None, "health of the new acquire resumes", sup.worker("acquire"))
        check(not alive(old["acquire"]), "killed acquire pid is gone (reaped)")
        logs = "\n".join(sup.log())
        check(re.search(r"^supervisor: warn: acquire \(pid %d\) ended after [0-9.]+ s: killed by "
                        r"signal 9 \(Killed\); restart 1 in 0\.1 s$" % old["acquire"], logs, re.M),
              "supervisor logs the death and the 0.1 s restart delay", logs[-600:])
        others = sup.pids()
        check(others.get("process") == old["process"] and others.get("upload") == old["upload"],
              "other workers untouched", others)

        # --- SIGSTOP a worker: the watchdog kills and restarts it
        victim = old["process"]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGSTOP)

        def new_process():
            x = sup.worker("process")
            return x if x and (x["pid"] or 0) > 0 and x["pid"] != victim else None

        w = wait_for(new_process, WATCHDOG_S + 10, 0.05)
        dt = time.monotonic() - t0
        check(w is not None and WATCHDOG_S - 0.5 <= dt <= WATCHDOG_S + 3.0,
              "SIGSTOP process: restarted after watchdog_s, within watchdog_s + 3 s (%.2f s)" % dt,
              w)
        check(wait_for(lambda: not alive(victim), 1), "the stopped process is gone")
        logs = "\n".join(sup.log())
        check(re.search(r"^supervisor: warn: process \(pid %d\): no heartbeat for [0-9.]+ s: "
                        r"killing it$" % victim, logs, re.M),
              "supervisor logs the missing heartbeat", logs[-600:])
        if w:
            pid = w["pid"]
            h = wait_for(lambda: (lambda x: x if x and x["pid"] == pid and
                                  x["last_health_age_s"] is not None else None)(
                sup.worker("process")), 15, 0.1)
            check(h is not None, "health of the new process resumes", sup.worker("process"))
        # the restarted one must stay up (not killed again by the watchdog)
        time.sleep(WATCHDOG_S + 0.5)
        st = sup.status()
        check(st and all(w["state"] == "running" for w in st["workers"]) and
              sup.worker("process", st)["restarts"] == 1 and
              sup.worker("acquire", st)["restarts"] == 1,
              "restarted workers stay up (no watchdog kill loop)", st)

        # --- tap health/ while a worker is being restarted
        tap = subprocess.Popen([MP, "tap", "health/", "--count", "3", "-c", cfg], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(tap)
        time.sleep(0.3)
        up = sup.worker("upload")
        killed_upload = up["pid"] if up and (up["pid"] or 0) > 0 else None
        if killed_upload:
            os.kill(killed_upload, signal.SIGKILL)
        try:
            out, err = tap.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            tap.kill()
            out, err = tap.communicate()
        lines = out.decode().splitlines()
        objs = []
        for l in lines:
            try:
                objs.append(json.loads(l))
            except ValueError:
                pass
        check(tap.returncode == 0 and len(lines) == 3 and len(objs) == 3,
              "tap health/ --count 3: 3 JSON lines, exit 0", (tap.returncode, lines, err))
        check(all(o.get("topic", "").startswith("health/") and
                  o["topic"] == "health/" + o["publisher"] and
                  o["envelope"]["health"]["worker"] == o["publisher"] and
                  o["seq"] == int(o["envelope"]["seq"]) for o in objs),
              "tap lines are health messages with consistent fields", objs)

        # --- a second supervisor on the same run_dir must be refused
        # (the tap may end before the supervisor has seen upload die: wait for its new pid)
        running = wait_for(lambda: (lambda st: st if st and sup.pids(st).get("upload") not in
                                    (None, killed_upload) else None)(sup.all_running()), 20)
        check(running is not None, "all workers running again after tap (upload restarted)",
              sup.status())
        # the pids of that look, when every one ran (a later look may catch a restart: null)
        before = sup.pids(running) if running else {}
        second = subprocess.Popen([MP, "run", "-c", cfg], env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        started.append(second)
        try:
            _, err2 = second.communicate(timeout=3)
            rc2 = second.returncode
        except subprocess.TimeoutExpired:
            second.send_signal(signal.SIGTERM)
            _, err2 = second.communicate(timeout=8)
            rc2 = "still running after 3 s"
        check(rc2 not in (0, "still running after 3 s") and
              len(err2.decode().strip().splitlines()) == 1,
              "second `meterpipe run` on the same run_dir refused with one line",
              (rc2, err2.decode()[-500:]))
        time.sleep(0.5)
        st = sup.status()
        check(st is not None and st["supervisor_pid"] == sup.proc.pid,
              "the first supervisor still answers status", st and st["supervisor_pid"])
        check(before and all(p and alive(p) and ppid_of(p) == sup.proc.pid
                             for p in before.values()),
              "the first supervisor's workers survived the second attempt",
              ({n: bool(p and alive(p)) for n, p in before.items()}, sup.log()[-6:]))
        after = sup.pids()
        check(after == before, "status still lists the first supervisor's workers",
              (before, after))

        # --- SIGTERM: everything gone within 6 s, exit 0
        st = sup.status() or {"workers": []}
        pids = [w["pid"] for w in st["workers"] if (w["pid"] or 0) > 0]
        t0 = time.monotonic()
        sup.proc.send_signal(signal.SIGTERM)
        try:
            rc = sup.proc.wait(6)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.monotonic() - t0
        check(rc == 0, "SIGTERM: supervisor exits 0 (%.2f s)" % dt, rc)
        check(wait_for(lambda: not any(alive(p) for p in pids), max(0.1, 6 - dt)) and
              not procs_using(cfg), "SIGTERM: every worker gone within 6 s",
              [p for p in pids if alive(p)])
        sup.reader.join(2)
        logs = sup.log()
        check(logs and logs[-1] == "supervisor: info: stopped", "last log line is 'stopped'",
              logs[-3:])
        for name in ("acquire", "process", "upload"):
            check(any(re.match(r"supervisor: info: %s stopped \(exit status 0\)$" % name, l)
                      for l in logs), "%s stopped cleanly (exit status 0)" % name)
        bad = [l for l in logs
               if not re.match(r"^(supervisor|acquire|process|upload|history): ", l)]
        check(not bad, "every stderr line is prefixed with its process name", bad[:5])
    finally:
        sup.stop()
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)
        d.remove()


def test_kill9_supervisor():
    d = Dir()
    cfg = d.config()
    sup = Supervisor(cfg)
    try:
        st = wait_for(sup.all_running, 20)
        if not check(st is not None, "kill -9 run: workers up", sup.log()[-5:]):
            return
        pids = [w["pid"] for w in st["workers"]]
        sup.proc.kill()
        sup.proc.wait()
        left = wait_for(lambda: not any(alive(p) for p in pids), 2.0)
        check(left, "kill -9 supervisor: no worker left after 2 s",
              [p for p in pids if alive(p)])
        check(not procs_using(cfg), "kill -9 supervisor: nothing mentions the config any more",
              procs_using(cfg))
    finally:
        sup.stop()
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)
        d.remove()


def test_backoff():
    d = Dir()
    cfg = d.config(watchdog_s=5)
    bindir = os.path.join(d.path, "bin")
    os.mkdir(bindir)
    for w in ("acquire", "process", "history"):
        os.symlink(os.path.join(os.path.abspath(BIN), "meterpipe-" + w),
                   os.path.join(bindir, "meterpipe-" + w))
    fake = os.path.join(bindir, "meterpipe-upload")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho \"fake upload failing (args: $*)\" >&2\n"
                "echo %s >&2\n"
                "printf 'no newline at the end' >&2\nexit 1\n" % ("L" * 5000))
    os.chmod(fake, 0o755)
    sup = Supervisor(cfg, ["--bin-dir", bindir])
    try:
        pat = re.compile(r"^supervisor: warn: upload \(pid (\d+)\) ended after ([0-9.]+) s: "
                         r"exit status 1; restart (\d+) in ([0-9.]+) s$")

        def restarts():
            return [(t, pat.match(l)) for t, l in sup.timed_log() if pat.match(l)]

        got = wait_for(lambda: len(restarts()) >= 6, 10, 0.1)
        rs = restarts()
        delays = [float(m.group(4)) for _, m in rs]
        nums = [int(m.group(3)) for _, m in rs]
        check(got and delays[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2],
              "failing upload: restart delays 0.1 0.2 0.4 0.8 1.6 3.2", delays)
        check(nums[:6] == [1, 2, 3, 4, 5, 6], "restart numbers count up", nums)
        # the delays are really waited: time from one death to the next start
        starts = [t for t, l in sup.timed_log() if re.match(r"^supervisor: info: started upload", l)]
        gaps = []
        for i, (t_dead, m) in enumerate(rs[:5]):
            nxt = [t for t in starts if t > t_dead]
            if nxt:
                gaps.append(round(nxt[0] - t_dead, 2))
        ok = len(gaps) == 5 and all(
            delays[i] * 0.9 - 0.02 <= gaps[i] <= delays[i] + 0.4 for i in range(5))
        check(ok, "measured restart intervals follow the delays", gaps)
        logs = sup.log()
        check(any(l.startswith("upload: fake upload failing (args: --config %s)" % cfg)
                  for l in logs), "worker stderr forwarded with the worker name",
              [l for l in logs if "fake" in l][:3])
        check("upload: no newline at the end" in logs,
              "a last line without newline is forwarded as a whole line",
              [l for l in logs if "newline" in l][:2])
        # a 5000-byte line: whole, or (when it arrives in pieces) cut at 4096 bytes; every
        # piece prefixed, nothing lost
        longs = [l for l in logs if l.startswith("upload: L")]
        first = longs[:1] if longs and len(longs[0]) == 5008 else longs[:2]
        check(first and all(l.startswith("upload: ") for l in first) and
              "".join(l[len("upload: "):] for l in first) == "L" * 5000 and
              len(first[0]) <= 8 + 5000 and (len(first) == 1 or len(first[0]) == 8 + 4096),
              "a 5000-byte line is forwarded prefixed and complete", [len(l) for l in longs[:3]])
        w = sup.worker("upload")
        check(w is not None and w["restarts"] >= 6 and w["last_exit"] == "exit status 1",
              "status shows the upload restarts and its last exit", w)
        st = sup.status()
        check(st and all(sup.worker(n, st)["restarts"] == 0 and sup.worker(n, st)["state"] ==
                         "running" for n in ("acquire", "process")),
              "healthy workers unaffected by the failing one", st)
    finally:
        sup.stop()
        check(sup.proc.returncode == 0, "backoff run stops with exit 0", sup.proc.returncode)
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)
        d.remove()


def test_stop_escalation():
    """A worker that ignores SIGTERM is killed after 5 s; what it started must not outlive it."""
    d = Dir()
    cfg = d.config(watchdog_s=10)
    bindir = os.path.join(d.path, "bin")
    os.mkdir(bindir)
    for w in ("acquire", "process", "history"):
        os.symlink(os.path.join(os.path.abspath(BIN), "meterpipe-" + w),
                   os.path.join(bindir, "meterpipe-" + w))
    fake = os.path.join(bindir, "meterpipe-upload")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\ntrap '' TERM\nsleep 30 &\necho \"helper $!\" >&2\n"
                "while :; do sleep 0.1; done\n")
    os.chmod(fake, 0o755)
    sup = Supervisor(cfg, ["--bin-dir", bindir])
    helper = None
    try:
        def helper_pid():
            for l in sup.log():
                m = re.match(r"^upload: helper (\d+)$", l)
                if m:
                    return int(m.group(1))
            return None

        helper = wait_for(helper_pid, 5)
        st = wait_for(lambda: (lambda s: s if s and all((w["pid"] or 0) > 0 for w in s["workers"])
                               else None)(sup.status()), 5)
        if not check(helper is not None and st is not None, "stubborn upload started",
                     sup.log()[-5:]):
            return
        up = sup.worker("upload", st)["pid"]
        t0 = time.monotonic()
        sup.proc.send_signal(signal.SIGTERM)
        try:
            rc = sup.proc.wait(7)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.monotonic() - t0
        check(rc == 0 and dt <= 6.0,
              "SIGTERM with a worker ignoring it: exit 0 within 6 s (%.2f s)" % dt, rc)
        sup.reader.join(2)
        logs = "\n".join(sup.log())
        check(re.search(r"^supervisor: warn: upload \(pid %d\) did not stop within 5 s: SIGKILL$"
                        % up, logs, re.M), "the stubborn worker is named and SIGKILLed",
              logs[-400:])
        check(not alive(up), "the stubborn worker is gone")
        check(wait_for(lambda: not alive(helper), 1.0),
              "a process the worker started does not outlive it (no orphan)",
              "pid %d (%s) still running" % (helper, open("/proc/%d/cmdline" % helper).read()
                                             .replace("\0", " ") if alive(helper) else ""))
    finally:
        sup.stop()
        if helper and alive(helper):
            os.kill(helper, signal.SIGKILL)
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)
        d.remove()


def test_smallest_watchdog():
    """watchdog_s = 1 is valid (1..3600): healthy workers must not be killed for it."""
    d = Dir()
    cfg = d.config(watchdog_s=1)
    sup = Supervisor(cfg)
    try:
        # the 4 s window starts once every worker runs and heartbeats (a loaded machine may
        # take a while to start them)
        check(wait_for(sup.all_running, 30, 0.1) is not None,
              "watchdog_s = 1: every worker running", sup.log()[-5:])
        time.sleep(4)
        kills = [l for l in sup.log() if "no heartbeat" in l]
        check(not kills, "watchdog_s = 1: no healthy worker killed in 4 s", kills[:3])
        st = sup.status()
        check(st and all(w["restarts"] == 0 for w in st["workers"]),
              "watchdog_s = 1: no restarts", st and [(w["name"], w["restarts"])
                                                     for w in st["workers"]])
    finally:
        sup.stop()
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)
        d.remove()


def expect_one_line_error(args, what, must_name, code=None, cfg_needle=None):
    r = run_cli(args)
    err = r.stderr.decode()
    lines = [l for l in err.splitlines() if l.strip()]
    ok = (r.returncode != 0 and (code is None or r.returncode == code) and len(lines) == 1 and
          must_name in lines[0] and no_crash_text(err))
    check(ok, what, (r.returncode, err[-500:]))
    if cfg_needle:
        time.sleep(0.2)
        check(not procs_using(cfg_needle), what + ": nothing left running",
              procs_using(cfg_needle))
    return r


def test_bad_input():
    d = Dir()
    try:
        missing = os.path.join(d.path, "nope.toml")
        expect_one_line_error(["run", "-c", missing], "run with a missing config: one-line error",
                              missing, cfg_needle=missing)

        afile = os.path.join(d.path, "afile")
        open(afile, "w").close()
        cfg = d.config(run_dir=os.path.join(afile, "run"))
        expect_one_line_error(["run", "-c", cfg],
                              "run_dir under a regular file: one-line error naming it",
                              os.path.join(afile, "run"), code=1, cfg_needle=cfg)

        cfg = d.config()
        empty = os.path.join(d.path, "emptybin")
        os.mkdir(empty)
        expect_one_line_error(["run", "-c", cfg, "--bin-dir", empty],
                              "missing worker binary: one-line error naming it",
                              os.path.join(empty, "meterpipe-acquire"), code=1, cfg_needle=cfg)

        r = run_cli(["check-config", cfg])
        check(r.returncode == 0 and r.stdout.decode().startswith(cfg + ": ok"),
              "check-config of a good file: exit 0", (r.returncode, r.stdout, r.stderr))
        bad = os.path.join(d.path, "bad.toml")
        with open(bad, "w") as f:
            f.write('[general]\nrun_dir = "/tmp/x"\nwatchdgo_s = 3\n\n[[meter]]\nname = "home"\n'
                    'source = "simulate"\n')
        r = run_cli(["check-config", bad])
        err = r.stderr.decode()
        check(r.returncode == 2 and re.search(r"^%s:3:\d+: .*watchdgo_s" % re.escape(bad), err,
                                              re.M) and no_crash_text(err),
              "check-config of a file with an unknown key: exit 2, FILE:LINE naming the key",
              (r.returncode, err))
        r = run_cli(["check-config", missing])
        check(r.returncode == 2 and missing in r.stderr.decode() and
              no_crash_text(r.stderr.decode()), "check-config of a missing file: exit 2",
              (r.returncode, r.stderr))

        # status with no supervisor running
        cfg2 = d.config()
        r = run_cli(["status", "-c", cfg2])
        err = r.stderr.decode()
        check(r.returncode == 1 and len(err.strip().splitlines()) == 1 and "supervisor.ctl" in err,
              "status without a supervisor: exit 1, one line", (r.returncode, err))
    finally:
        d.remove()


def main():
    if not os.access(MP, os.X_OK):
        print("FAIL meterpipe not found at %s (set MP_BIN_DIR)" % MP)
        return 1
    ck.run(test_bad_input, test_running_supervisor, test_kill9_supervisor, test_backoff,
           test_stop_escalation, test_smallest_watchdog, where=False)
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()
    return ck.finish(time_inline=True)


if __name__ == "__main__":
    sys.exit(main())
