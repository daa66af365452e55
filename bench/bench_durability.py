#!/usr/bin/python3
"""Figures of the durability design (docs/DURABILITY.md): prints, asserts nothing.

1. Disk bytes written per hour by the whole pipeline (the kernel's write_bytes from
   /proc/<pid>/io of the supervisor and every worker: page-cache pages dirtied, i.e. what
   will be written to the SD card) at 1 and 10 readings/s, target InfluxDB 1.6 and daily files,
   four pipelines side by side over a window (default 120 s after 10 s of warm-up).
2. Drain time after the target returns: influxd down for --outage seconds (default 90, longer
   than the write backoff reaches) while 10 readings/s flow, then started again: seconds until
   InfluxDB holds every reading published (the /ping probe is what makes this short).
3. Readings lost per fault scenario: one run of tests/integration/durability.py per target
   (kill -9 of upload/process/both, influxd hung and down, a supervisor kill) with --seed.

Usage: bench/bench_durability.py [--seconds 120] [--outage 90] [--seed 1] [--skip-faults]
       [--skip-drain]
(env MP_BIN_DIR, default build/bin). Standard library only.
"""
import argparse
import os
import shutil
import tempfile
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("MP_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import durability  # noqa: E402
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


def pids_of(p):
    """{name: pid} of the supervisor and its running workers."""
    st = p.status() or {"workers": []}
    out = {"supervisor": p.proc.pid}
    for w in st["workers"]:
        if w.get("pid"):
            out[w["name"]] = w["pid"]
    return out


def influx_count(url, db):
    q = urllib.parse.urlencode({"db": db, "q": "SELECT count(power_import_w) FROM electricity"})
    try:
        with urllib.request.urlopen(url + "/query?" + q, timeout=10) as r:
            import json
            s = json.loads(r.read())["results"][0].get("series")
            return s[0]["values"][0][1] if s else 0
    except (OSError, ValueError, KeyError, IndexError):
        return -1


def create_db(url, db):
    urllib.request.urlopen(url + "/query", data=urllib.parse.urlencode(
        {"q": 'CREATE DATABASE "%s"' % db}).encode(), timeout=10).read()


def pipeline(rate, upload, speed=None):
    """A Pipeline whose run_dir is on a tmpfs (/dev/shm), as /run/meterpipe is on a Pi: the
    bus sockets and process's bus position file cost no disk writes there."""
    speed = speed or rate  # one meter second per telegram: distinct timestamps
    p = mptest.Pipeline('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = %s\n'
                        'speed = %s\n\n[upload]\n%s' % (rate, speed, upload), prefix="mpbd.")
    shm = tempfile.mkdtemp(prefix="mpbd.run.", dir="/dev/shm")
    with open(p.cfg) as f:
        text = f.read().replace('run_dir = "%s"' % p.run_dir, 'run_dir = "%s"' % shm, 1)
    with open(p.cfg, "w") as f:
        f.write(text)
    p.run_dir = shm
    p.status_args = ["--run-dir", shm]
    return p


def disk_figures(a, influx):
    influx_toml = 'target = "influxdb1"\nurl = "%s"\ndatabase = "bench"\n' % influx.url
    runs = [("influxdb1", 1, influx_toml), ("influxdb1", 10, influx_toml),
            ("file", 1, 'target = "file"\n'), ("file", 10, 'target = "file"\n')]
    pipes = []
    try:
        for name, rate, toml in runs:
            p = pipeline(rate, toml).start()
            pipes.append((name, rate, p))
        for _, _, p in pipes:
            if not p.wait_running(30):
                print("a pipeline did not start")
                return
        time.sleep(a.warmup)
        before = {id(p): {n: (pid, write_bytes(pid)) for n, pid in pids_of(p).items()}
                  for _, _, p in pipes}
        t0 = time.monotonic()
        time.sleep(a.seconds)
        dt = time.monotonic() - t0
        print("1. disk bytes written per hour (kernel write_bytes), window %.0f s after %.0f s "
              "warm-up; MB = 1e6 bytes" % (dt, a.warmup))
        print("%-10s %6s %10s   %s" % ("target", "rate", "total MB/h", "per process MB/h"))
        for name, rate, p in pipes:
            per = {}
            for n, (pid, b) in before[id(p)].items():
                e = write_bytes(pid)
                if b is None or e is None:
                    per[n] = None
                else:
                    per[n] = (e - b) * 3600 / dt / 1e6
            total = sum(v for v in per.values() if v)
            print("%-10s %4d/s %10.2f   %s" % (name, rate, total, ", ".join(
                "%s %.2f" % (n, v) if v is not None else "%s restarted" % n
                for n, v in sorted(per.items()))))
        print("   (before the journal: meterpipe-upload alone wrote 38-40 MB/h at 1 reading/s)")
    finally:
        for _, _, p in pipes:
            p.stop()
            shutil.rmtree(p.run_dir, ignore_errors=True)


def drain_figure(a, influx):
    create_db(influx.url, "drain")
    p = pipeline(10, 'target = "influxdb1"\nurl = "%s"\ndatabase = "drain"\nbatch_age_s = 1\n'
                 % influx.url).start()
    try:
        if not p.wait_running(30):
            print("2. drain: pipeline did not start")
            return
        time.sleep(10)
        influx.stop()
        time.sleep(a.outage)
        influx.start()
        back = time.monotonic()
        published = p.counters("acquire").get("frames_home", 0)
        ok = mptest.wait_for(lambda: influx_count(influx.url, "drain") >= published, 300, 0.1)
        print("2. drain after influxd was down %.0f s (10 readings/s): %s" % (
            a.outage, "%.1f s until InfluxDB held all %d readings published before its return"
            % (time.monotonic() - back, published) if ok else "not drained in 300 s"))
    finally:
        p.stop()
        shutil.rmtree(p.run_dir, ignore_errors=True)


def fault_figures(a):
    print("3. readings lost per fault scenario (seed %d; 60 s of faults each):" % a.seed)
    for target in ("influxdb1", "file"):
        r = durability.Run(a.seed, target)
        r.run()  # prints "missing N" per check and the frames lost at the supervisor kill
        print("   %s: every reading stored %s s after the meter stopped" % (
            target, "%.1f" % r.drain_s if r.drain_s is not None else "-"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--outage", type=float, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-faults", action="store_true")
    ap.add_argument("--skip-drain", action="store_true")
    a = ap.parse_args()
    influx = mptest.InfluxServer(prefix="mpbdi.")
    try:
        if not influx.start():
            print("influxd did not start")
            return 1
        create_db(influx.url, "bench")
        disk_figures(a, influx)
        if not a.skip_drain:
            drain_figure(a, influx)
    finally:
        influx.remove()
    if not a.skip_faults:
        fault_figures(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
