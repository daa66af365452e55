#!/usr/bin/python3
"""History figures (history/, issue 18). Prints figures; not a pass/fail test.

size    bench/bench_history size: DAYS (default 60) of a simulated DSMR 5 meter (a telegram
        every 10 s; the minute rows are the same as at 1 s) into a fresh database, one
        transaction per minute; the file size per year of one meter.
io      `meterpipe run` on a simulated meter at 1 reading/s (real time) for --minutes
        (default 10): bytes written to disk per hour, measured by the kernel
        (/proc/<pid>/io write_bytes), for the history worker and for the whole pipeline
        (every worker, upload to daily files as by default, and the supervisor); run_dir on
        a tmpfs (/dev/shm) as /run/meterpipe is on a Pi.
api     /api/history from meterpipe-serve (read-only on the same file) for 31 days of
        minutes and for 3 years of days, next to the same rows from the `sqlite3` shell
        (`sqlite3 -readonly -csv FILE SELECT ...`, a fresh process like each HTTP request's
        fresh connection): median of --runs (7) each, taken in turns, in one run of this
        script; with --before-bin-dir DIR a second serve from another build (e.g. main's)
        beside it, on the same file, in the same turns.

usage: bench/bench_history.py [--minutes 10] [--days 60] [--skip io] [--bin-dir DIR]
       [--before-bin-dir DIR] [--runs 7]
"""
import argparse
import collections
import datetime
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import mptest  # noqa: E402


def write_bytes(pid):
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def bench_size(bench_dir, days):
    tmp = tempfile.mkdtemp(prefix="mphb.")
    try:
        out = subprocess.run([os.path.join(bench_dir, "bench_history"), "size", tmp, str(days),
                              "10"], capture_output=True, text=True, check=True).stdout
        print(out.rstrip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_io(minutes):
    p = mptest.Pipeline('[[meter]]\nname = "home"\nsource = "simulate"\n\n'
                        '[upload]\ntarget = "file"\n', prefix="mphio.")
    # run_dir on a tmpfs, as /run/meterpipe is on a Pi (process keeps its bus position there)
    shm = tempfile.mkdtemp(prefix="mphio.", dir="/dev/shm")
    with open(p.cfg) as f:
        text = f.read().replace('run_dir = "%s"' % p.run_dir, 'run_dir = "%s/run"' % shm)
    with open(p.cfg, "w") as f:
        f.write(text)
    p.run_dir = shm + "/run"
    p.status_args = ["--run-dir", p.run_dir]
    try:
        p.start()
        st = p.wait_running(15)
        if st is None:
            print("io: pipeline did not start")
            return
        time.sleep(20)  # past start-up (schema, first commit)
        st = p.status()
        pids = {w["name"]: w["pid"] for w in st["workers"]}
        pids["supervisor"] = p.proc.pid
        w0 = {n: write_bytes(pid) for n, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(minutes * 60)
        dt = time.monotonic() - t0
        w1 = {n: write_bytes(pid) for n, pid in pids.items()}
        per_h = {n: (w1[n] - w0[n]) * 3600 / dt for n in pids if w0[n] is not None and
                 w1[n] is not None}
        print("disk writes at 1 reading/s over %.0f s (kernel write_bytes, per hour):" % dt)
        for n in sorted(per_h):
            print("  %-10s %8.3f MB/h" % (n, per_h[n] / 1e6))
        print("  %-10s %8.3f MB/h   (goal for history: <= 1 MB/h)" % ("pipeline",
                                                                        sum(per_h.values()) / 1e6))
    finally:
        p.stop()
        shutil.rmtree(shm, ignore_errors=True)


def proc_cpu(pid):
    """utime + stime of a process in seconds (/proc/<pid>/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_time(fn, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def start_serve(db, bin_dir):
    """A pipeline with serve on `db`, its workers from `bin_dir`; (pipeline, base URL)."""
    port = mptest.free_port()
    p = mptest.Pipeline('[serve]\nenabled = true\nlisten = "127.0.0.1:%d"\n\n'
                        '[history]\ndb_file = "%s"\n' % (port, db), prefix="mphs.")
    mp_before, mptest.MP = mptest.MP, os.path.join(bin_dir, "meterpipe")
    try:
        p.start()
        if p.wait_running(15) is None:
            print("api: serve from %s did not start" % bin_dir)
    finally:
        mptest.MP = mp_before
    p.mp = os.path.join(bin_dir, "meterpipe")
    return p, "http://127.0.0.1:%d" % port


def serve_pid(p):
    mp_before, mptest.MP = mptest.MP, p.mp
    try:
        return (p.worker("serve") or {}).get("pid")
    finally:
        mptest.MP = mp_before


def bench_api(bench_dir, bin_dir, before_dir, runs):
    tmp = tempfile.mkdtemp(prefix="mpha.")
    db = os.path.join(tmp, "history.sqlite")
    serves = []
    try:
        subprocess.run([os.path.join(bench_dir, "bench_history"), "size", tmp, "33", "10"],
                       capture_output=True, check=True)
        con = sqlite3.connect(db)  # 3 years of days for a second meter
        con.execute("INSERT INTO meters(id, name) VALUES (2, 'years')")
        d = datetime.date(2023, 1, 1)
        for i in range(3 * 365):
            day = d + datetime.timedelta(days=i)
            con.execute("INSERT INTO days(meter, day, t0, t1, estimated, imp_t1, imp_t2, exp_t1,"
                        " exp_t2, gas, peak_w, peak_t) VALUES (2, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
                        (day.isoformat(), 1672527600 + i * 86400, 1672527600 + (i + 1) * 86400,
                         4000 + i, 5000 + i, 3000, 2000, 1500, 3200, 1672527600 + i * 86400))
        con.commit()
        con.close()
        variants = [("this build", bin_dir, db)]
        if before_dir:  # its own copy, as the schema 1 an older build reads (same rows)
            old_db = os.path.join(tmp, "history-v1.sqlite")
            con = sqlite3.connect(db)
            con.execute("VACUUM INTO ?", (old_db,))
            con.close()
            con = sqlite3.connect(old_db)
            con.execute("DROP TABLE IF EXISTS taken")
            con.execute("PRAGMA user_version=1")
            con.commit()
            con.close()
            variants.append(("before", before_dir, old_db))
        for name, d, file in variants:
            p, base = start_serve(file, d)
            serves.append((name, p, base, serve_pid(p)))
        cases = [
            ("31 days of minutes", "/api/history/home?from=2026-01-01&to=2026-01-31"
             "&resolution=minute",
             "SELECT * FROM minutes WHERE meter = 1 AND t >= 1767222000 AND t < 1769900400"
             " ORDER BY t"),
            ("3 years of days", "/api/history/years?from=2023-01-01&to=2025-12-31"
             "&resolution=day",
             "SELECT * FROM days WHERE meter = 2 AND day >= '2023-01-01' AND day < "
             "'2026-01-01' ORDER BY day"),
        ]
        print("%-20s %-11s %10s %10s %7s %12s %12s %7s %8s %9s" % (
            "query", "serve", "api ms", "sqlite3 ms", "ratio", "api cpu ms", "sqlite3 cpu",
            "ratio", "rows", "bytes"))
        for what, url, sql in cases:
            def shell():
                subprocess.run(["sqlite3", "-readonly", "-csv", db, sql],
                               stdout=subprocess.DEVNULL, check=True)
            # in turns (shell, then each serve), so that the machine's load falls on all alike
            wall = collections.defaultdict(list)
            cpu = collections.defaultdict(float)
            body = {}
            for _ in range(runs):
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                shell()
                wall["sqlite3"].append(time.perf_counter() - t)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu["sqlite3"] += (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / runs
                for name, p, base, pid in serves:
                    c0 = proc_cpu(pid)
                    t = time.perf_counter()
                    try:
                        body[name] = urllib.request.urlopen(base + url).read()
                    except urllib.error.HTTPError as e:
                        raise SystemExit("api: %s: %s: %s" % (name, e, e.read()[:300]))
                    wall[name].append(time.perf_counter() - t)
                    cpu[name] += (proc_cpu(pid) - c0) / runs
            ts, cs = statistics.median(wall["sqlite3"]), cpu["sqlite3"]
            if len(body) > 1:
                print("%s: the serves' bodies are %s" % (what, "the same" if len(
                    set(body.values())) == 1 else "DIFFERENT"))
            for name, _, _, _ in serves:
                ta = statistics.median(wall[name])
                print("%-20s %-11s %10.1f %10.1f %7.2f %12.1f %12.1f %7.2f %8d %9d"
                      % (what, name, ta * 1e3, ts * 1e3, ta / ts, cpu[name] * 1e3, cs * 1e3,
                         cpu[name] / cs, len(json.loads(body[name])["rows"]), len(body[name])))
        print("(wall: median of %d in turns on this machine as it is; cpu: the serve worker's own"
              " CPU time per request, the sqlite3 shell process's)" % runs)
    finally:
        for _, p, _, _ in serves:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10, help="io: minutes measured")
    ap.add_argument("--days", type=int, default=60, help="size: simulated days")
    ap.add_argument("--skip", action="append", default=[], help="size, io or api")
    ap.add_argument("--bin-dir", default=mptest.BIN_DIR)
    ap.add_argument("--before-bin-dir", help="api: a second meterpipe build to compare with")
    ap.add_argument("--runs", type=int, default=7, help="api: requests per figure")
    a = ap.parse_args()
    bench_dir = os.path.join(os.path.dirname(a.bin_dir), "bench")
    if "size" not in a.skip:
        bench_size(bench_dir, a.days)
    if "api" not in a.skip:
        bench_api(bench_dir, a.bin_dir, a.before_bin_dir, a.runs)
    if "io" not in a.skip:
        bench_io(a.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
