#!/usr/bin/python3
"""End to end: retention of the daily line-protocol files (upload target = "file",
compress = true, keep_days = 3; upload/day_retention.h).

A data_dir pre-filled with fake day files around "today" (UTC), then `meterpipe run` with a
simulated meter for a few seconds: finished days gzipped (same bytes after decompression),
days older than keep_days deleted, today's and yesterday's .lp kept (today's receiving new
lines), unrelated files untouched, the info line logged, health counters set, and a stop on
SIGTERM within 2 s, also while a large day file is being compressed.

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Prints one line per check and
`N passed, M failed`; exits 1 on any failure. Everything it starts is ended by pid.
"""
import datetime
import gzip
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

DAY_FILE = re.compile(r"^\.?\d{4}-\d{2}-\d{2}\.lp(\.gz)?(\.tmp)?$")

BODY = """
[[meter]]
name = "home"
source = "simulate"

[upload]
target = "file"
data_dir = "@DIR@/data"
keep_days = 3
"""


def day(ago):
    """YYYY-MM-DD of the UTC day `ago` days before today."""
    d = datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=ago)
    return d.isoformat()


def fake_lines(n, seed):
    """n line-protocol lines with varied values (bytes)."""
    out = []
    for i in range(n):
        out.append("electricity,meter=old power_import_w=%d,energy_import_t1_kwh=%d.%03d %d\n"
                   % ((i * 7919 + seed) % 5000, 1000 + i // 100, (i * 31) % 1000,
                      1700000000 + seed * 86400 + i))
    return "".join(out).encode()


def put(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stop_timed(p):
    """SIGTERM to the supervisor; (seconds until it exited, exit code)."""
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    try:
        p.proc.wait(10)
    except Exception:  # noqa: BLE001 - reported by the check below
        pass
    return time.monotonic() - t0, p.proc.poll()


# ---------------------------------------------------------------------------------------------
def test_retention():
    p = Pipeline(BODY, prefix="mpf.")
    data = p.path("data")
    os.makedirs(data)
    content = {}
    for ago, n in ((2, 300), (3, 500), (4, 50), (10, 40)):
        content[ago] = fake_lines(n, ago)
        put(os.path.join(data, day(ago) + ".lp"), content[ago])
    put(os.path.join(data, day(6) + ".lp.gz"), gzip.compress(fake_lines(20, 6)))
    put(os.path.join(data, "." + day(2) + ".lp.gz.tmp"), b"partial")  # an interrupted pass
    yesterday = fake_lines(30, 1)
    today_start = fake_lines(3, 0)
    put(os.path.join(data, day(1) + ".lp"), yesterday)
    put(os.path.join(data, day(0) + ".lp"), today_start)
    others = {"notes.txt": b"keep me\n", "2026-13-40.lp": b"not a date\n",
              day(20) + ".lp.bak": b"a backup\n"}
    for n, c in others.items():
        put(os.path.join(data, n), c)
    today_at_start = day(0)
    try:
        p.start()
        check(p.wait_running(10) is not None, "every worker running", p.log()[-5:])
        hit = p.wait_log(r"upload: info: compressed 2 day files \(.* MB -> .* MB\), deleted 3 "
                         r"older than 3 days", 10)
        check(hit is not None, "info line: compressed 2 day files, deleted 3 older than 3 days",
              [l for l in p.log() if "upload" in l][-6:])
        check(p.wait_log(r"removed 1 temp file", 10) is not None,
              "the leftover temp file is reported removed")
        got = wait_for(lambda: p.counters("upload").get("day_files_compressed") == 2 and
                       p.counters("upload").get("day_files_deleted") == 3, 20)
        check(got, "health counters day_files_compressed 2, day_files_deleted 3",
              p.counters("upload"))
        w = p.worker("upload") or {}
        check(w.get("gauges", {}).get("data_dir_bytes", 0) > 0, "gauge data_dir_bytes set",
              w.get("gauges"))

        names = {n for n in os.listdir(data) if DAY_FILE.match(n) and n not in others}
        want = {day(3) + ".lp.gz", day(2) + ".lp.gz", day(1) + ".lp", day(0) + ".lp"}
        check(names == want, "day files: 2 and 3 days old gzipped, 4+ days old deleted, "
              "yesterday and today plain, no temp file", sorted(names))
        for ago in (2, 3):
            gz = os.path.join(data, day(ago) + ".lp.gz")
            if os.path.exists(gz):
                check(gzip.decompress(read(gz)) == content[ago],
                      "%s.lp.gz decompresses to the original bytes" % day(ago))
        check(read(os.path.join(data, day(1) + ".lp")) == yesterday, "yesterday's .lp unchanged")
        today = os.path.join(data, day(0) + ".lp")
        grew = wait_for(lambda: os.path.getsize(today) > len(today_start), 30)
        t = read(today)
        check(grew and t.startswith(today_start) and b"electricity,meter=home " in t,
              "today's .lp receives new lines after the old ones", len(t))
        for n, c in others.items():
            check(read(os.path.join(data, n)) == c, "unrelated file %s untouched" % n)
        check(not p.log_matching(r"upload: (warn|error)"), "no warning or error from upload",
              p.log_matching(r"upload: (warn|error)"))

        secs, rc = stop_timed(p)
        mptest.note("stopped %.2f s after SIGTERM" % secs)
        check(rc == 0 and secs < 2.0, "SIGTERM: stopped cleanly within 2 s", (rc, round(secs, 2)))
        check(p.log_matching(r"upload stopped \(exit status 0\)"), "upload exited with status 0",
              p.log()[-5:])
        if day(0) != today_at_start:
            mptest.note("the UTC day changed during the test: checks above may not hold")
    finally:
        p.stop()


def test_stop_during_compression():
    """A large finished day: SIGTERM while it is being compressed stops the worker within 2 s;
    the .lp is then intact (or fully gzipped), and no temp file is left."""
    p = Pipeline(BODY, prefix="mpf.")
    data = p.path("data")
    os.makedirs(data)
    big = fake_lines(1000000, 5) + fake_lines(1000000, 6)  # ~165 MB
    lp = os.path.join(data, day(2) + ".lp")
    put(lp, big)
    p.start()
    try:
        hit = p.wait_log(r"upload: info: writing daily line-protocol files", 10)
        check(hit is not None, "upload started", p.log()[-5:])
        busy = wait_for(lambda: any(n.endswith(".tmp") for n in os.listdir(data)), 5, 0.01)
        secs, rc = stop_timed(p)
        mptest.note("compression was %s when SIGTERM came; stopped %.2f s after it"
                    % ("running" if busy else "not seen running", secs))
        check(rc == 0 and secs < 2.0, "SIGTERM during a compression: stopped within 2 s",
              (rc, round(secs, 2)))
        names = sorted(n for n in os.listdir(data) if DAY_FILE.match(n) and day(2) in n)
        if names == [day(2) + ".lp"]:
            check(read(lp) == big, "abandoned: the .lp is intact, no temp file left")
        else:
            check(names == [day(2) + ".lp.gz"] and
                  gzip.decompress(read(os.path.join(data, day(2) + ".lp.gz"))) == big,
                  "finished: only the .gz, with the original bytes", names)
    finally:
        p.stop()


ck.run(test_retention, test_stop_during_compression)
sys.exit(ck.finish())
