#!/usr/bin/python3
"""End to end: the history worker survives kill -9 (history/worker_history.h).

1. A simulated meter (4 readings/s, 30 simulated seconds per second: 8 readings a minute)
   while the history worker is killed with SIGKILL every 1.5-4 s for MP_HISTORY_KILL_S
   seconds (default 25; the issue's 2 minutes with MP_HISTORY_KILL_S=120), then a normal
   stop: PRAGMA integrity_check is ok and every minute that was on the bus is in the
   database with exactly as many readings as the bus carried (none missing, none twice).
2. Real time (speed 1): kill -9 of the history worker and the supervisor (its other workers
   end with it, process's replay ring too), then a new start on
   the same state_dir: integrity ok, no minute holds more readings than the bus carried
   (the minute across the crash is continued, not doubled), every reading the bus carried
   up to the journal's group commit before the kill (general.durability_s, 1 s) is stored
   although the worker had committed none of them (rebuilt from acquire's journal), and the
   readings after the restart are there.
3. kill -9 of everything a few seconds after two relay switches (commands), once actuate's
   journal holds them: after the next start the database has both (the worker had not
   committed the last one: it reads actuate's journal as it reads acquire's).

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Prints one line per check and
`N passed, M failed`; exits 1 on any failure. Everything it starts is ended by pid.
"""
import collections
import os
import random
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, alive, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check
KILL_S = float(os.environ.get("MP_HISTORY_KILL_S", "25"))


def body(speed, rate):
    return ('[[meter]]\nname = "home"\nsource = "simulate"\nspeed = %d\nrate_hz = %d\n\n'
            '[upload]\nenabled = false\n' % (speed, rate))


# a relay its rules never switch (only the commands of the test do)
RELAY = ('\n[[relay]]\nname = "boiler"\nmeter = "home"\nload_w = 2000\non_below_w = -900000\n'
         'off_above_w = 900000\n[relay.output]\ntype = "sim"\n')


def tapped_minutes(tap):
    """{minute start (Unix s): readings} of the tapped readings; the seqs seen."""
    per = collections.Counter()
    seqs = []
    for m in tap.messages("reading/home"):
        t = int(m["envelope"]["reading"]["meter_time_ns"]) // 10**9
        per[t - t % 60] += 1
        seqs.append((m["envelope"]["instance_id"], int(m["seq"])))
    return per, seqs


def db_minutes(p):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(p.dir, "state", "history.sqlite"),
                          uri=True)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        rows = dict(con.execute("SELECT t, n FROM minutes ORDER BY t").fetchall())
        dup = con.execute("SELECT count(*) FROM (SELECT meter, t FROM minutes GROUP BY meter, t "
                          "HAVING count(*) > 1)").fetchone()[0]
        days = con.execute("SELECT count(*) FROM days").fetchone()[0]
    finally:
        con.close()
    return ok, rows, dup, days


def kill_everything(p):
    """kill -9 of the history worker, then of the supervisor (its workers end with it)."""
    check(kill_history(p), "kill -9 of the history worker")
    p.proc.kill()
    p.proc.wait()
    gone = wait_for(lambda: not any(alive(pid) for pid in p.seen_pids), 20)
    check(gone, "kill -9 of the supervisor: its workers end with it")


def kill_history(p):
    """SIGKILL the history worker when status names a pid that is meterpipe-history."""
    st = p.status()
    w = p.worker("history", st) if st else None
    pid = w.get("pid") if w else None
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"meterpipe-history" not in f.read():
                return False
        os.kill(pid, signal.SIGKILL)
        return True
    except OSError:
        return False


def test_kill_history_worker():
    p = Pipeline(body(30, 4), prefix="mphk.")
    tap = p.start_tap(["reading/"])
    rng = random.Random(18)
    try:
        p.start()
        if not check(p.wait_running(15) is not None, "pipeline running", p.log()[-5:]):
            return
        kills = 0
        end = time.monotonic() + KILL_S
        while time.monotonic() < end:
            time.sleep(rng.uniform(1.5, 4))
            kills += kill_history(p)
        check(kills >= 5,  # (the supervisor's restart backoff limits the rate)
              "history killed with SIGKILL %d times in %.0f s" % (kills, KILL_S))
        # the last history instance has taken readings (those it fetched from process's
        # replay ring at start come first): only then is the stop a fair test
        check(wait_for(lambda: (p.worker("history") or {}).get("state") == "running" and
                       p.counters("history").get("readings", 0) > 0, 30),
              "the last history instance runs and has taken readings", p.worker("history"))
        rc = p.stop_process()  # the tap keeps listening until process is gone
        time.sleep(0.5)
        check(rc == 0, "SIGTERM: the pipeline stops (exit 0)", rc)
        per, seqs = tapped_minutes(tap)
        check(len({i for i, _ in seqs}) == 1 and
              [s for _, s in seqs] == list(range(seqs[0][1], seqs[0][1] + len(seqs))),
              "the tap saw every reading (one process instance, no seq gap)", seqs[:2])
        ok, rows, dup, days = db_minutes(p)
        check(ok == "ok", "PRAGMA integrity_check: ok", ok)
        check(dup == 0 and days >= 1, "no minute stored twice; %d days" % days)
        first = min(per)  # the tap may have missed the start of its first minute
        missing = [t for t in per if t > first and t not in rows]
        wrong = [(t, per[t], rows[t]) for t in per if t > first and t in rows and rows[t] != per[t]]
        check(len(per) >= KILL_S / 3 and not missing,
              "every minute that was on the bus is stored (%d minutes, %d readings)"
              % (len(per), sum(per.values())), missing[:5])
        check(not wrong, "each minute holds exactly the readings the bus carried (none twice)",
              wrong[:5])
        mptest.note("%d kills of history over %.0f s; %d minutes, %d readings"
                    % (kills, KILL_S, len(per), sum(per.values())))
    finally:
        p.stop()


def test_kill_supervisor():
    p = Pipeline(body(1, 4), prefix="mphs.")
    tap = p.start_tap(["reading/"])
    try:
        p.start()
        if not check(p.wait_running(15) is not None, "pipeline running", p.log()[-5:]):
            return
        time.sleep(8)
        p.status()  # remember the worker pids
        # the whole pipeline at once, as in a crash: history first (the workers that outlive
        # the supervisor get SIGTERM and would commit), then the supervisor (process and its
        # replay ring go with it)
        kill_t = time.time()
        kill_everything(p)
        killed_at = time.time()
        p.start()
        check(p.wait_running(15) is not None, "started again on the same state_dir",
              p.log()[-5:])
        wait_for(lambda: any(int(m["envelope"]["reading"]["meter_time_ns"]) > (killed_at + 6)
                             * 10**9 for m in tap.messages("reading/home")), 30)
        rc = p.stop_process()  # the tap keeps listening until process is gone
        time.sleep(0.5)
        check(rc == 0, "SIGTERM: the pipeline stops (exit 0)", rc)
        per, seqs = tapped_minutes(tap)
        ok, rows, dup, _ = db_minutes(p)
        check(ok == "ok" and dup == 0, "PRAGMA integrity_check ok, no minute twice", ok)
        # The tap connects while each process instance starts and may miss its first seqs
        # (ZeroMQ's slow joiner): those readings were on the bus all the same, in the minute
        # of the instance's first tapped reading or the one before.
        carried = collections.Counter(per)
        for inst in {i for i, _ in seqs}:
            first_seq = min(s for i, s in seqs if i == inst)
            first_t = min(int(m["envelope"]["reading"]["meter_time_ns"]) // 10**9
                          for m in tap.messages("reading/home")
                          if m["envelope"]["instance_id"] == inst)
            for t in (first_t - first_t % 60, first_t - first_t % 60 - 60):
                carried[t] += first_seq - 1
        over = [(t, rows[t], carried.get(t, 0)) for t in rows if rows[t] > carried.get(t, 0)]
        check(not over, "no minute holds more readings than the bus carried", over[:5])
        # what was on the bus 2 s before the kill (1 s group commit + margin) was in the
        # journal: the history worker, which committed at its first reading only, rebuilt it
        before = collections.Counter()
        for m in tap.messages("reading/home"):
            t = int(m["envelope"]["reading"]["meter_time_ns"]) / 1e9
            if t <= kill_t - 2:
                before[int(t) - int(t) % 60] += 1
        short = [(t, rows.get(t, 0), n) for t, n in before.items() if rows.get(t, 0) < n]
        check(sum(before.values()) >= 8 and not short,
              "every reading on the bus up to 2 s before the kill is stored (%d readings in %d "
              "minutes: from acquire's journal)" % (sum(before.values()), len(before)), short[:5])
        after = collections.Counter()
        for m in tap.messages("reading/home"):
            t = int(m["envelope"]["reading"]["meter_time_ns"]) // 10**9
            if t > killed_at:
                after[t - t % 60] += 1
        check(after and all(rows.get(t, 0) >= n for t, n in after.items()),
              "the readings after the restart are stored (the minute across the crash goes on)",
              [(t, rows.get(t), n, per[t]) for t, n in after.items()])
    finally:
        p.stop()


def relay_rows(p):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(p.dir, "state", "history.sqlite"),
                          uri=True)
    try:
        return con.execute("SELECT relay, t_ms, old_state, new_state, mode FROM relay_events "
                           "ORDER BY t_ms").fetchall()
    finally:
        con.close()


def test_relay_events_after_crash():
    p = Pipeline(body(1, 4) + RELAY, prefix="mphr.")
    tap = p.start_tap(["relay/"])
    try:
        p.start()
        if not check(p.wait_running(15) is not None and
                     p.wait_counter("history", "readings", lambda n: n > 0) > 0,
                     "pipeline running, history has taken readings (its first commit)",
                     p.log()[-5:]):
            return
        for state in ("on", "off"):
            r = mptest.run_cli(["relay", "boiler", state, "--for", "1h", "-c", p.cfg])
            check(r.returncode == 0, "`meterpipe relay boiler %s --for 1h`: exit 0" % state,
                  (r.returncode, r.stdout, r.stderr))
        events = wait_for(lambda: (lambda e: e if len(e) >= 2 and
                                   not e[-1]["envelope"]["relay"].get("new_state") else None)(
            tap.messages("relay/boiler")), 20)
        if not check(events, "two relay events on the bus (on, then off)",
                     tap.messages("relay/boiler")):
            return
        n = len(events)
        # the journal's writer counts a record once its write() is done: in the page cache,
        # which a kill -9 of every process does not take
        written = p.wait_counter("actuate", "journal_records", lambda v: v >= n)
        check(written >= n, "actuate's journal holds the %d relay events" % n, written)
        # it commits every 2 minutes or 300 readings (75 s here) after its first commit: the
        # last event is not in the database yet, or this test would not test the journal
        before = relay_rows(p)
        last = int(events[-1]["envelope"]["send_time_ns"]) // 10**6
        check(all(r[1] != last for r in before),
              "the last event is not committed before the kill (%d rows)" % len(before), before)
        kill_everything(p)
        p.start()
        check(p.wait_running(15) is not None, "started again on the same state_dir",
              p.log()[-5:])
        check(p.wait_counter("history", "relay_events", lambda v: v >= n) >= n,
              "the new history worker read the events from actuate's journal")
        rc = p.stop_process()
        check(rc == 0, "SIGTERM: the pipeline stops (exit 0)", rc)
        rows = relay_rows(p)
        want = [("boiler", int(e["envelope"]["send_time_ns"]) // 10**6,
                 int(bool(e["envelope"]["relay"].get("old_state"))),
                 int(bool(e["envelope"]["relay"].get("new_state"))),
                 e["envelope"]["relay"].get("mode")) for e in events]
        check(all(w in rows for w in want),
              "every relay event of the bus is in the database", (want, rows))
    finally:
        p.stop()


sys.exit(mptest.script_main(ck, test_kill_history_worker, test_kill_supervisor,
                            test_relay_events_after_crash))
