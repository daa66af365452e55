#!/usr/bin/python3
"""Footprint of the whole pipeline in steady state (issue 22): per process RSS, PSS, CPU %
of one core, wake-ups/s and threads, with a plain Python DSMR reader measured side by side.

Prints figures; it is not a pass/fail test (exit status 0 unless nothing could be measured).

Runs, each with a fresh `meterpipe run` and nothing else of meterpipe on the machine (PSS
splits shared pages between the processes that map them: measure alone):
  demo    config/demo.toml as it is (simulated DSMR 5 meter at 1 telegram/s, daily files,
          one sim relay, serve on), run_dir/state_dir in a temp dir, serve on a free port
  silent  the same with the meter on source = "tcp" to a server of this script that accepts
          and never sends (a P1 dongle with the meter unplugged): no telegram at all
After `--warmup` seconds every process is sampled twice, `--seconds` apart:
  RSS, PSS     VmRSS of /proc/PID/status, Pss of /proc/PID/smaps_rollup (at the end)
  CPU %        on-CPU time of all threads (/proc/PID/task/*/schedstat, ns) / wall time
  wakeups/s    voluntary context switches of all threads (/proc/PID/task/*/status): each
               is one sleep that ended, i.e. one wake-up
  threads      at the end

The peer, in the same window: bench/dsmr_peer.py (dsmr_parser's SocketReader when that is
installed, else a stand-in doing the same work; its first output line says which) reading a
DSMR 5 telegram a second over TCP from a feeder thread of this script (in silent mode: a
connection on which nothing comes). Only the reader is measured, not the feeder.

--before BIN_DIR runs every mode first with the executables of BIN_DIR (a build of the
code before a change), then with --bin-dir, so both are measured in one run.

usage: bench/bench_footprint.py [--seconds 60] [--warmup 10] [--modes demo,silent]
                                 [--bin-dir build/bin] [--before OTHER_BIN_DIR] [--no-peer]
                                 [--threads]
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MP_SOURCE_DIR") or os.path.join(HERE, "..")
BIN = os.environ.get("MP_BIN_DIR") or os.path.join(SRC, "build", "bin")
PEER = os.path.join(HERE, "dsmr_peer.py")
TELEGRAM = os.path.join(SRC, "tests", "data", "dsmr", "v5.txt")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL", "NOTIFY_SOCKET"):
    ENV.pop(k, None)


# ------------------------------------------------------------------------------------------
# /proc sampling

def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def status_field(text, key):
    m = re.search(r"^%s:\s+(\d+)" % key, text, re.M)
    return int(m.group(1)) if m else 0


def sample(pid):
    """{tid: (cpu_ns, voluntary switches)}, RSS kB, PSS kB, threads; None when gone."""
    status = read("/proc/%d/status" % pid)
    if not status:
        return None
    tasks = {}
    for d in glob.glob("/proc/%d/task/*" % pid):
        tid = int(os.path.basename(d))
        sched = read(d + "/schedstat").split()
        st = read(d + "/status")
        if sched and st:
            tasks[tid] = (int(sched[0]), status_field(st, "voluntary_ctxt_switches"),
                          read(d + "/comm").strip())
    pss = status_field(read("/proc/%d/smaps_rollup" % pid), "Pss")
    return {"tasks": tasks, "rss": status_field(status, "VmRSS"), "pss": pss,
            "threads": status_field(status, "Threads")}


def delta(a, b):
    """CPU ns and wake-ups between two samples (threads that ended in between count up to
    the first sample only; new ones count fully)."""
    cpu = wake = 0
    for tid, (c1, w1, _) in b["tasks"].items():
        c0, w0, _ = a["tasks"].get(tid, (0, 0, ""))
        cpu += c1 - c0
        wake += w1 - w0
    return cpu, wake


def per_thread(a, b):
    """{thread name: wake-ups} between two samples, threads of one name summed."""
    out = {}
    for tid, (_, w1, name) in b["tasks"].items():
        w0 = a["tasks"].get(tid, (0, 0, ""))[1]
        out[name] = out.get(name, 0) + w1 - w0
    return out


def children(ppid):
    out = []
    for st in glob.glob("/proc/[0-9]*/stat"):
        text = read(st)
        r = text.rfind(")")
        if r < 0:
            continue
        fields = text[r + 2:].split()
        if len(fields) > 1 and int(fields[1]) == ppid:
            out.append(int(st.split("/")[2]))
    return out


def name_of(pid):
    argv0 = read("/proc/%d/cmdline" % pid).split("\0")[0]
    base = os.path.basename(argv0)
    return base[len("meterpipe-"):] if base.startswith("meterpipe-") else base


# ------------------------------------------------------------------------------------------
# the meter side

def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


class Feeder:
    """Accepts connections; sends every client one telegram a second (silent: nothing)."""

    def __init__(self, telegram):
        self.srv = listener()
        self.port = self.srv.getsockname()[1]
        self.telegram = telegram
        self.conns = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        if telegram:
            threading.Thread(target=self._send, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)

    def _send(self):
        nxt = time.monotonic()
        while not self.stop.is_set():
            nxt += 1.0
            for c in list(self.conns):
                try:
                    c.sendall(self.telegram)
                except OSError:
                    self.conns.remove(c)
            self.stop.wait(max(0.0, nxt - time.monotonic()))

    def close(self):
        self.stop.set()
        self.srv.close()
        for c in self.conns:
            c.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(d, mode, silent_port):
    text = open(os.path.join(SRC, "config", "demo.toml")).read()
    text = text.replace('"/tmp/meterpipe-demo/run"', '"%s/run"' % d)
    text = text.replace('"/tmp/meterpipe-demo/state"', '"%s/state"' % d)
    text = text.replace('"127.0.0.1:8080"', '"127.0.0.1:%d"' % free_port())
    if mode == "silent":
        text, n = re.subn(r'source = "simulate"\n(#[^\n]*\n)*speed = \d+\nrate_hz = \d+\n',
                          'source = "tcp"\nprotocol = "dsmr"\nhost = "127.0.0.1"\nport = %d\n'
                          % silent_port, text)
        if n != 1:
            sys.exit("config/demo.toml changed: cannot turn its meter into a silent one")
    path = os.path.join(d, "meterpipe.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def env_for(bin_dir):
    """A build tree's executables find libmeterpipe-core.so by an absolute RUNPATH (the build
    tree's lib/): a copy of an older build must load its own copy, in BIN_DIR/../lib."""
    env = dict(ENV)
    lib = os.path.join(bin_dir, "..", "lib")
    if os.path.exists(os.path.join(lib, "libmeterpipe-core.so")):
        env["LD_LIBRARY_PATH"] = os.path.abspath(lib)
    elif os.path.abspath(bin_dir) != os.path.abspath(BIN):
        print("# warning: no %s/libmeterpipe-core.so: %s runs with the library its RUNPATH "
              "names (maybe another build's)" % (os.path.abspath(lib), bin_dir))
    return env


def workers_up(bin_dir, cfg):
    r = subprocess.run([os.path.join(bin_dir, "meterpipe"), "status", "--json", "-c", cfg],
                       env=env_for(bin_dir), capture_output=True, timeout=10)
    try:
        st = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        return False
    ws = (st or {}).get("workers") or []
    # running and heard from (a worker's first heartbeat comes once it is set up)
    return bool(ws) and all(w.get("state") == "running" and
                            w.get("last_health_age_s") is not None for w in ws)


# ------------------------------------------------------------------------------------------

def measure(label, bin_dir, mode, args):
    d = tempfile.mkdtemp(prefix="mpeff.")
    telegram = open(TELEGRAM, "rb").read()
    silent = Feeder(None)
    peer_feed = Feeder(None if mode == "silent" else telegram)
    cfg = make_config(d, mode, silent.port)
    log = open(os.path.join(d, "meterpipe.log"), "wb")
    sup = subprocess.Popen([os.path.join(bin_dir, "meterpipe"), "run", "-c", cfg],
                           env=env_for(bin_dir),
                           stdout=log, stderr=subprocess.STDOUT)
    peer = None
    if not args.no_peer:
        peer = subprocess.Popen([PYTHON, PEER, "127.0.0.1", str(peer_feed.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not workers_up(bin_dir, cfg):
            time.sleep(0.2)
        time.sleep(args.warmup)
        pids = {sup.pid: "supervisor"}
        for c in children(sup.pid):
            pids[c] = name_of(c)
        if peer:
            pids[peer.pid] = "peer"
        first = {p: sample(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        last = {p: sample(p) for p in pids}
        wall = time.monotonic() - t0
        others = other_meterpipes(set(pids))
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(15)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
        peer_line = ""
        if peer:
            peer.kill()
            out, _ = peer.communicate()
            peer_line = out.splitlines()[0] if out else "peer: no output"
        silent.close()
        peer_feed.close()
        log.close()
    rows = []
    for p, name in pids.items():
        a, b = first.get(p), last.get(p)
        if not a or not b:
            rows.append((name, None))
            continue
        cpu, wake = delta(a, b)
        rows.append((name, {"rss": b["rss"] / 1024.0, "pss": b["pss"] / 1024.0,
                            "cpu": cpu / 1e9 / wall * 100, "wake": wake / wall,
                            "threads": b["threads"],
                            "per_thread": {t: n / wall for t, n in per_thread(a, b).items()}}))
    restarts = re.findall(rb"restart", open(os.path.join(d, "meterpipe.log"), "rb").read())
    shutil.rmtree(d, ignore_errors=True)
    return {"label": label, "mode": mode, "rows": rows, "peer": peer_line, "wall": wall,
            "restarts": len(restarts), "others": others, "threads": args.threads}


def other_meterpipes(ours):
    """Processes of meterpipe not started by this run (they share pages: PSS reads low)."""
    n = 0
    for st in glob.glob("/proc/[0-9]*/cmdline"):
        pid = int(st.split("/")[2])
        argv0 = os.path.basename(read(st).split("\0")[0])
        if argv0.startswith("meterpipe") and pid not in ours:
            n += 1
    return n


def print_table(res):
    print("\n## %s, %s: %.0f s of steady state" % (res["label"], res["mode"], res["wall"]))
    if res["others"]:
        print("(%d other meterpipe processes ran on the machine meanwhile: they share library "
              "pages, so PSS reads lower than alone)" % res["others"])
    if res["restarts"]:
        print("(the log mentions 'restart' %d times: a worker was restarted?)" % res["restarts"])
    print("| process | RSS MB | PSS MB | CPU % of one core | wakeups/s | threads |")
    print("|---|---|---|---|---|---|")
    tot = {"rss": 0, "pss": 0, "cpu": 0, "wake": 0, "threads": 0}
    peer = None
    for name, r in res["rows"]:
        if r is None:
            print("| %s | (exited during the run) | | | | |" % name)
            continue
        line = "| %s | %.1f | %.1f | %.3f | %.1f | %d |" % (
            name, r["rss"], r["pss"], r["cpu"], r["wake"], r["threads"])
        if name == "peer":
            peer = line
            continue
        print(line)
        for k in tot:
            tot[k] += r[k]
    print("| **total** | %.1f | **%.1f** | **%.3f** | **%.1f** | %d |" % (
        tot["rss"], tot["pss"], tot["cpu"], tot["wake"], tot["threads"]))
    if peer:
        print(peer.replace("| peer |", "| peer (%s) |" % res["peer"].replace("peer: ", "")))
    if res.get("threads"):
        print("\nwakeups/s per thread (threads of one name summed):")
        for name, r in res["rows"]:
            if r and name != "peer":
                print("  %-10s %s" % (name, ", ".join(
                    "%s %.2f" % (t, w) for t, w in sorted(r["per_thread"].items(),
                                                          key=lambda x: -x[1]))))
    return tot


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--modes", default="demo,silent")
    ap.add_argument("--bin-dir", default=BIN)
    ap.add_argument("--before", help="bin dir of the build before a change, measured first")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--threads", action="store_true",
                    help="also print the wake-ups of every thread (by name) of each process")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.bin_dir, "meterpipe")):
        sys.exit("meterpipe not found in %s (--bin-dir)" % args.bin_dir)
    runs = []
    if args.before:
        runs.append(("before", args.before))
    runs.append(("after" if args.before else "this build", args.bin_dir))
    print("# pipeline footprint: config/demo.toml, %s, %d CPUs, load %s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(),
        " ".join(read("/proc/loadavg").split()[:3])))
    totals = {}
    for mode in args.modes.split(","):
        for label, bin_dir in runs:
            totals[(label, mode)] = print_table(measure(label, bin_dir, mode, args))
            sys.stdout.flush()
    print_summary(runs, totals)


def print_summary(runs, totals):
    """Per build: CPU per telegram (demo, 1 telegram/s), and the wake-ups that do not come
    from telegrams (those of the silent run: heartbeats, timers)."""
    print("\n## summary (the whole pipeline)")
    print("| build | CPU ms per telegram (demo) | wakeups/s demo | wakeups/s silent "
          "(not from telegrams) | PSS MB demo |")
    print("|---|---|---|---|---|")
    for label, _ in runs:
        demo, silent = totals.get((label, "demo")), totals.get((label, "silent"))
        print("| %s | %s | %s | %s | %s |" % (
            label, "%.2f" % (demo["cpu"] * 10) if demo else "-",
            "%.1f" % demo["wake"] if demo else "-", "%.1f" % silent["wake"] if silent else "-",
            "%.1f" % demo["pss"] if demo else "-"))


if __name__ == "__main__":
    main()
