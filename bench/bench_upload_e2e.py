#!/usr/bin/python3
"""Figures of meterpipe-upload running in the real pipeline (`meterpipe run`, simulated meter).

Four pipelines run side by side for the measuring window (default 60 s, after 10 s of warm-up):
  influxdb1 target (a local influxd started here, product defaults: batch 5000 / 5 s,
  precision s) and file target (daily files), each at 1 reading/s and at 10 readings/s.

Per uploader (read from /proc/<pid>): VmRSS and VmHWM at the end, CPU time used in the window,
write_bytes (what the kernel accounted as sent to storage, i.e. page-cache pages dirtied) and
wchar (bytes passed to write()) over the window; disk bytes per hour = window figure x 3600 /
window. The spool/daily-file sizes are also listed.

Usage: bench/bench_upload_e2e.py [--seconds 60]   (env MP_BIN_DIR or build/bin)
Prints figures only; not a timed test. Standard library only.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("MP_BIN_DIR") or os.path.join(HERE, "..", "build", "bin")
MP = os.path.join(BIN, "meterpipe")
ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(k, None)
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def ping(url):
    try:
        with urllib.request.urlopen(url + "/ping", timeout=1) as r:
            return r.status == 204
    except OSError:
        return False


def proc_figures(pid):
    f = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                f[k] = int(v.split()[0])  # kB
    with open("/proc/%d/io" % pid) as fh:
        for line in fh:
            k, _, v = line.partition(":")
            f[k] = int(v)
    with open("/proc/%d/stat" % pid) as fh:
        st = fh.read()
    fields = st[st.rindex(")") + 2:].split()
    f["cpu_s"] = (int(fields[11]) + int(fields[12])) / TICK
    return f


def dir_bytes(path):
    n = 0
    for root, _, files in os.walk(path):
        for fn in files:
            try:
                n += os.path.getsize(os.path.join(root, fn))
            except OSError:
                pass
    return n


class Pipeline:
    def __init__(self, name, rate, upload_toml):
        self.name, self.rate = name, rate
        self.dir = tempfile.mkdtemp(prefix="mpub.", dir="/tmp")
        self.cfg = os.path.join(self.dir, "mp.toml")
        self.run_dir = os.path.join(self.dir, "run")
        self.state = os.path.join(self.dir, "state")
        with open(self.cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\n\n[[meter]]\nname = "home"\n'
                    'source = "simulate"\nrate_hz = %s\n\n[upload]\n%s\n'
                    % (self.run_dir, self.state, rate, upload_toml))
        self.proc = subprocess.Popen([MP, "run", "-c", self.cfg], env=ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "log"), "wb"))

    def status(self):
        r = subprocess.run([MP, "status", "--json", "--run-dir", self.run_dir], env=ENV,
                           capture_output=True, timeout=10)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None

    def upload(self):
        st = self.status()
        for w in (st or {}).get("workers", []):
            if w["name"] == "upload" and w["pid"] > 0 and w["state"] == "running":
                return w
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    a = ap.parse_args()

    idir = tempfile.mkdtemp(prefix="mpubi.", dir="/tmp")
    port, rpc = free_port(), free_port()
    conf = os.path.join(idir, "influxdb.conf")
    with open(conf, "w") as f:
        f.write('reporting-enabled = false\nbind-address = "127.0.0.1:%d"\n[meta]\n  dir = "%s/m"\n'
                '[data]\n  dir = "%s/d"\n  wal-dir = "%s/w"\n  query-log-enabled = false\n'
                '[monitor]\n  store-enabled = false\n[http]\n  bind-address = "127.0.0.1:%d"\n'
                '  log-enabled = false\n  pprof-enabled = false\n[ifql]\n  enabled = false\n'
                % (rpc, idir, idir, idir, port))
    influxd = subprocess.Popen(["influxd", "-config", conf], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    pipes = []
    try:
        if not wait_for(lambda: ping(url), 20):
            print("influxd did not start")
            return 1
        req = urllib.request.Request(url + "/query", data=urllib.parse.urlencode(
            {"q": "CREATE DATABASE bench"}).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        influx = 'target = "influxdb1"\nurl = "%s"\ndatabase = "bench"\n' % url
        for name, rate, toml in (("influxdb1", 1, influx), ("influxdb1", 10, influx),
                                 ("file", 1, 'target = "file"\n'), ("file", 10, 'target = "file"\n')):
            pipes.append(Pipeline(name, rate, toml))
        ups = {}
        for p in pipes:
            w = wait_for(p.upload, 10, 0.1)
            if not w:
                print("%s @ %d/s: upload did not start" % (p.name, p.rate))
                return 1
            ups[p] = w["pid"]
        time.sleep(a.warmup)
        before = {p: proc_figures(ups[p]) for p in pipes}
        t0 = time.monotonic()
        time.sleep(a.seconds)
        dt = time.monotonic() - t0
        after = {p: proc_figures(ups[p]) for p in pipes}
        print("meterpipe-upload in `meterpipe run` (simulated DSMR meter), window %.0f s after "
              "%.0f s warm-up" % (dt, a.warmup))
        print("%-10s %7s %9s %9s %7s %14s %14s %12s %10s" % (
            "target", "rate", "VmRSS kB", "VmHWM kB", "CPU %", "write_bytes/h", "wchar/h",
            "points", "state kB"))
        for p in pipes:
            b, e = before[p], after[p]
            w = p.upload()
            same = w and w["pid"] == ups[p]
            pts = w["counters"].get("points_received") if w else None
            print("%-10s %5d/s %9d %9d %7.2f %11.1f MB %11.1f MB %12s %10d%s" % (
                p.name, p.rate, e["VmRSS"], e["VmHWM"], 100 * (e["cpu_s"] - b["cpu_s"]) / dt,
                (e["write_bytes"] - b["write_bytes"]) * 3600 / dt / 1e6,
                (e["wchar"] - b["wchar"]) * 3600 / dt / 1e6, pts, dir_bytes(p.state) // 1024,
                "" if same else "  (upload restarted during the window!)"))
        print("write_bytes/h and wchar/h: the window's delta x 3600 / window (MB = 1e6 bytes).")
    finally:
        for p in pipes:
            p.stop()
        if influxd.poll() is None:
            influxd.send_signal(signal.SIGTERM)
            try:
                influxd.wait(10)
            except subprocess.TimeoutExpired:
                influxd.kill()
                influxd.wait()
        shutil.rmtree(idir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
