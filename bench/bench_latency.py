#!/usr/bin/python3
"""Latency from meter to relay decision, end to end through `meterpipe run` (issue 5).

Prints figures; it is not a pass/fail test (exit status 0 unless the pipeline could not be
measured at all).

What is timed: from the moment the last byte of a DSMR telegram has been written into the
TCP source (a server in this script that acquire connects to, source = "tcp") to the relay/
event, both
  on the bus : the event's envelope send time (stamped by actuate as it publishes), and
  seen       : the moment a C++ subscriber (bench/latency_observer, bus::Subscriber connected
               to ipc://<run_dir>/actuate.pub) took it off its socket: one more bus hop.
The observer prints its stamps, so this script's own delays never enter the figures.
Every telegram causes a switch: one relay with on_delay_s = off_delay_s = 0, min_on_s =
min_off_s = 0, max_switches_per_hour = 0 (unlimited), on_below_w = -100, off_above_w = 100,
and telegrams alternating -2000 W / +2000 W. With one relay the engine's settle_s (5 s) does
not apply (it only corrects what OTHER relays of the same meter see), so nothing else limits
switching; telegrams are sent one at a time, the next one `--spacing-ms` (default 20 ms)
after the previous send and only once its event arrived.

The event carries the receive stamps of the reading it was decided on
(RelayEvent.trigger_receive_*), so the time splits into
  wire->acquire : last byte written -> acquire read it (CLOCK_MONOTONIC)
  acquire->bus  : acquire read it -> event published (framing, one bus hop, decode, engine)
  bus->seen     : event published -> taken off the observer's socket (one bus hop)

Runs (each with a fresh supervisor):
  file     upload target = "file"                     (normal)
  stalled  upload target = "influxdb1" at 127.0.0.1:<port> that accepts and never answers
  with --unpinned also both again with general.realtime_cpu = -1 (acquire and actuate not on
  a CPU of their own), and with --command also: output type "command" (/bin/true), "file".

Needs the build's bench/latency_observer (cmake -DMP_BENCH=ON, the default).

usage: bench/bench_latency.py [-n 1000] [--spacing-ms 20] [--unpinned] [--command] [--repeat R]
                              [--dir /tmp] [--log-level info] [--bin-dir DIR]
"""
import argparse
import datetime
import select
import os
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

BENCH = os.environ.get("MP_BENCH_DIR") or os.path.join(os.path.dirname(BIN), "bench")

ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(k, None)



def dsmr_time(when):
    """0-0:1.0.0 value: Dutch local time + S (summer) or W (winter), as meters send it."""
    try:
        from zoneinfo import ZoneInfo
        dt = datetime.datetime.fromtimestamp(when, ZoneInfo("Europe/Amsterdam"))
        return dt.strftime("%y%m%d%H%M%S") + ("S" if dt.dst() else "W")
    except Exception:  # no tz database: CET
        return time.strftime("%y%m%d%H%M%S", time.gmtime(when + 3600)) + "W"

def crc16_arc(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def telegram(net_w):
    ts = dsmr_time(time.time())
    lines = [
        "/ISk5\\2MT382-1000", "", "1-3:0.2.8(50)", "0-0:1.0.0(%s)" % ts,
        "0-0:96.1.1(4B384547303034303436333935353037)",
        "1-0:1.8.1(000004.426*kWh)", "1-0:1.8.2(000002.399*kWh)",
        "1-0:2.8.1(000002.444*kWh)", "1-0:2.8.2(000000.000*kWh)", "0-0:96.14.0(0002)",
        "1-0:1.7.0(%06.3f*kW)" % (max(net_w, 0) / 1000.0),
        "1-0:2.7.0(%06.3f*kW)" % (max(-net_w, 0) / 1000.0),
        "0-0:96.7.21(00013)", "0-0:96.7.9(00000)", "1-0:99.97.0(0)(0-0:96.7.19)",
        "1-0:32.32.0(00000)", "1-0:52.32.0(00000)", "1-0:72.32.0(00000)",
        "1-0:32.36.0(00000)", "1-0:52.36.0(00000)", "1-0:72.36.0(00000)", "0-0:96.13.0()",
        "1-0:32.7.0(0230.0*V)", "1-0:52.7.0(0230.0*V)", "1-0:72.7.0(0229.0*V)",
        "1-0:31.7.0(0.48*A)", "1-0:51.7.0(0.44*A)", "1-0:71.7.0(0.86*A)",
        "1-0:21.7.0(00.070*kW)", "1-0:41.7.0(00.032*kW)", "1-0:61.7.0(00.142*kW)",
        "1-0:22.7.0(00.000*kW)", "1-0:42.7.0(00.000*kW)", "1-0:62.7.0(00.000*kW)",
        "0-1:24.1.0(003)", "0-1:96.1.0(3232323241424344313233343536373839)",
        "0-1:24.2.1(170102161005W)(00000.107*m3)",
    ]
    body = ("\r\n".join(lines) + "\r\n!").encode()
    return body + b"%04X\r\n" % crc16_arc(body)


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


class Blackhole:
    """Accepts connections and never reads or answers (a hung InfluxDB)."""

    def __init__(self):
        self.srv = listener()
        self.port = self.srv.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.srv.close()
        for c in self.conns:
            c.close()


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    i = int(k)
    j = min(i + 1, len(xs) - 1)
    return xs[i] + (xs[j] - xs[i]) * (k - i)


class Observer:
    """bench/latency_observer: one line per relay/ event, stamped as it was received."""

    def __init__(self, run_dir):
        self.p = subprocess.Popen([os.path.join(BENCH, "latency_observer"), run_dir],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout_s):
        end = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(2)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def supervisor_status(cfg):
    import json
    r = subprocess.run([os.path.join(BIN, "meterpipe"), "status", "--json", "-c", cfg], env=ENV,
                       capture_output=True, timeout=10)
    try:
        return json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        return None


def run_case(label, upload, output, n, spacing_ms, quiet, base="/tmp", log_level="info",
             general="", extra="", hooks=None):
    """extra: more config appended (e.g. an [mqtt] table); hooks: {"measure": f(cfg) called
    after the warm-up, "done": f(cfg) after the measured telegrams} (bench_mqtt_stall.py)."""
    hooks = hooks or {}
    d = tempfile.mkdtemp(prefix="mpb.", dir=base)
    run_dir = os.path.join(d, "run")
    srv = listener()
    hole = Blackhole() if upload == "stalled" else None
    if upload == "stalled":
        up = ('[upload]\ntarget = "influxdb1"\nurl = "http://127.0.0.1:%d"\ndatabase = "m"\n'
              'batch_age_s = 1\ntimeout_s = 5\n' % hole.port)
    else:
        up = '[upload]\ntarget = "file"\nbatch_age_s = 1\n'
    if output == "command":
        out = '[relay.output]\ntype = "command"\non_command = ["/bin/true"]\n' \
              'off_command = ["/bin/true"]\n'
    else:
        out = '[relay.output]\ntype = "sim"\n'
    cfg = os.path.join(d, "meterpipe.toml")
    with open(cfg, "w") as f:
        f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s/state"\nwatchdog_s = 5\n'
                'log_level = "%s"\n%s\n'
                '[[meter]]\nname = "home"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\n\n'
                '%s\n[[relay]]\nname = "bench"\nmeter = "home"\non_below_w = -100\n'
                'off_above_w = 100\non_delay_s = 0\noff_delay_s = 0\nmin_on_s = 0\n'
                'min_off_s = 0\nmax_switches_per_hour = 0\nstale_after_s = 30\n%s\n%s'
                % (run_dir, d, log_level, general, srv.getsockname()[1], up, out, extra))
    log = open(os.path.join(d, "supervisor.log"), "wb")
    sup = subprocess.Popen([os.path.join(BIN, "meterpipe"), "run", "-c", cfg], env=ENV,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    obs = Observer(run_dir)
    result = None
    try:
        srv.settimeout(10)
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        want = [-2000, 2000]
        stray = [0]  # messages drained before a send (not answers to it)

        def drain():
            n = 0
            while obs.line(0) is not None:
                n += 1
            return n

        def one(i, timeout_s=1.0):
            """Sends telegram i; returns a dict of moments in ns (keys below) and the event.
            Only the event with the state telegram i asks for counts (the failsafe event of
            actuate's start, or a late event of an earlier telegram, are skipped).
              send, acq, seen          : CLOCK_MONOTONIC (acq = acquire's read stamp)
              send_w, acq_w, pub_w, seen_w : CLOCK_REALTIME (pub_w = the event's envelope
                                         send time, stamped by actuate when it published)"""
            stray[0] += drain()
            data = telegram(want[i % 2])
            conn.sendall(data)
            t = {"send": time.monotonic_ns(), "send_w": time.time_ns()}
            ev = None
            end = time.monotonic() + timeout_s
            while ev is None:
                line = obs.line(end - time.monotonic())
                if line is None:
                    break
                f = line.split()
                if len(f) != 7 or int(f[0]) != (want[i % 2] < 0):
                    continue  # "ready", or not the state this telegram asks for
                ev = {"new_state": f[0] == "1", "ok": f[1] == "1"}
                t["acq"], t["acq_w"], t["pub_w"], t["seen"], t["seen_w"] = map(int, f[2:])
            return t, ev

        # warm-up: until the subscriber is connected and every telegram switches
        ok_streak = 0
        for i in range(400):
            t, ev = one(i, 0.5)
            ok_streak = ok_streak + 1 if (ev is not None and ev["new_state"] == (i % 2 == 0)
                                          and ev["ok"] and t["acq"]) else 0
            if ok_streak >= 20:
                break
            time.sleep(spacing_ms / 1000.0)
        if ok_streak < 20:
            print("%-26s pipeline did not switch on every telegram during warm-up (see %s)"
                  % (label, log.name))
            return None
        start_i = i + 1
        stray[0] = 0
        res = {k: [] for k in KEYS}
        missed = wrong = 0
        if "measure" in hooks:
            hooks["measure"](cfg)
        t0 = time.monotonic()
        for k in range(n):
            i = start_i + k
            t, ev = one(i)
            if ev is None:
                missed += 1
            else:
                if ev["new_state"] != (i % 2 == 0) or not ev["ok"]:
                    wrong += 1
                ms = lambda a, b: (t[b] - t[a]) / 1e6
                res["seen"].append(ms("send", "seen"))
                res["bus"].append(ms("send_w", "pub_w"))
                res["wire"].append(ms("send", "acq"))
                res["decide"].append(ms("acq_w", "pub_w"))
                res["observe"].append(ms("pub_w", "seen_w"))
            nxt = t["send"] / 1e9 + spacing_ms / 1000.0
            pause = nxt - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        dur = time.monotonic() - t0
        if "done" in hooks:
            hooks["done"](cfg)
        st = supervisor_status(cfg)
        up_w = None
        for w in (st or {}).get("workers", []):
            if w["name"] == "upload":
                up_w = w
        result = dict(res)
        result.update({"missed": missed, "wrong": wrong + stray[0], "dur": dur,
                       "upload": up_w, "restarts": {w["name"]: w["restarts"]
                                                    for w in (st or {}).get("workers", [])},
                       "cpus": {w["name"]: w.get("cpus", "") for w in (st or {}).get("workers", [])}})
        if not quiet:
            print("%-26s %5d events in %.1f s, missed %d, late or unexpected %d" %
                  (label, len(res["bus"]), dur, missed, wrong))
        return result
    except OSError as e:
        print("%-26s failed: %s (see %s)" % (label, e, log.name))
        return None
    finally:
        obs.close()
        try:
            conn.close()
        except Exception:
            pass
        srv.close()
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(8)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
        if hole:
            hole.close()
        log.close()
        if result is not None:
            shutil.rmtree(d, ignore_errors=True)


# bus: last byte written -> relay/ event published (its envelope's send time)
# seen: last byte written -> the event taken off latency_observer's socket (one more hop)
# wire: last byte written -> acquire read it; decide: acquire read it -> event published;
# observe: event published -> arrived here
KEYS = ("bus", "seen", "wire", "decide", "observe")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt(xs):
    return "p50 %7.3f  p90 %7.3f  p99 %7.3f  max %8.3f ms" % (
        percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), max(xs) if xs else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="measured telegrams per run")
    ap.add_argument("--spacing-ms", type=float, default=20.0, help="telegram spacing")
    ap.add_argument("--unpinned", action="store_true",
                    help="also measure with general.realtime_cpu = -1 (no CPU pinning)")
    ap.add_argument("--command", action="store_true",
                    help="also measure output type command (/bin/true)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per case, interleaved (file, stalled, file, ...), pooled")
    ap.add_argument("--dir", default="/tmp",
                    help="where the run's temp dir (run_dir, state_dir) goes, e.g. /dev/shm")
    ap.add_argument("--log-level", default="info", help="general.log_level of the runs")
    ap.add_argument("--bin-dir", default=None)
    a = ap.parse_args()
    global BIN
    if a.bin_dir:
        BIN = a.bin_dir
    if not os.access(os.path.join(BIN, "meterpipe"), os.X_OK):
        sys.exit("bench_latency: no meterpipe in %s (set MP_BIN_DIR or --bin-dir)" % BIN)
    if not os.access(os.path.join(BENCH, "latency_observer"), os.X_OK):
        sys.exit("bench_latency: no latency_observer in %s (build with -DMP_BENCH=ON, or set "
                 "MP_BENCH_DIR)" % BENCH)
    print("meter -> relay latency: last byte written to the TCP source -> relay/ event on "
          "actuate.pub")
    print("%d telegrams per run, one every %.0f ms, each switching (sim output unless "
          "noted); state in %s, log_level %s; load average %s" %
          (a.n, a.spacing_ms, a.dir, a.log_level, loadavg()))
    cases = [("file", "file", "sim", ""), ("stalled", "stalled", "sim", "")]
    if a.unpinned:
        cases += [("file, unpinned", "file", "sim", "realtime_cpu = -1"),
                  ("stalled, unpinned", "stalled", "sim", "realtime_cpu = -1")]
    if a.command:
        cases.append(("file, command output", "file", "command", ""))
    res = {}
    for _ in range(max(1, a.repeat)):
        for label, upload, output, general in cases:
            r = run_case(label, upload, output, a.n, a.spacing_ms, False, a.dir,
                         a.log_level, general)
            if r is None:
                continue
            if label in res:  # pool the samples of repeated runs
                for k in KEYS:
                    res[label][k] += r[k]
                for k in ("missed", "wrong", "dur"):
                    res[label][k] += r[k]
                res[label]["upload"] = r["upload"]
                res[label]["restarts"] = r["restarts"]
            else:
                res[label] = r
    print()
    for label, r in res.items():
        print("%-22s on the bus    %s" % (label, fmt(r["bus"])))
        print("%-22s seen          %s" % ("", fmt(r["seen"])))
        print("%-22s  wire->acquire %s" % ("", fmt(r["wire"])))
        print("%-22s  acquire->bus  %s" % ("", fmt(r["decide"])))
        print("%-22s  bus->seen     %s" % ("", fmt(r["observe"])))
        u = r["upload"]
        if u:
            print("%-22s  upload: restarts %d, gauges %s" % (
                "", u["restarts"], {k: round(v, 1) for k, v in u["gauges"].items()}))
        print("%-22s  worker restarts %s" % ("", r["restarts"]))
        print("%-22s  worker CPUs %s" % ("", r["cpus"]))
    print("load average at the end: %s" % loadavg())
    for normal, stalled in (("file", "stalled"), ("file, unpinned", "stalled, unpinned")):
        if normal not in res or stalled not in res:
            continue
        print()
        for key, what in (("bus", "on the bus"), ("seen", "seen by a subscriber")):
            n50, n99 = percentile(res[normal][key], 50), percentile(res[normal][key], 99)
            s50, s99 = (percentile(res[stalled][key], 50), percentile(res[stalled][key], 99))
            print("%s, %s: p50 normal %.3f ms, stalled upload %.3f ms; p99 normal %.3f ms, "
                  "stalled %.3f ms (goal <= 2); stalled/normal p50 %.2f, p99 %.2f "
                  "(goal <= 1.1)" % ("pinned" if normal == "file" else "unpinned", what,
                                     n50, s50, n99, s99, s50 / n50, s99 / n99))
    return 0 if res else 1


if __name__ == "__main__":
    sys.exit(main())
