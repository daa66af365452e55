"""Fault injection against the durability promise (docs/DURABILITY.md), shared by
test_e2e_durability_influx.py and test_e2e_durability_files.py.

One run per seed, the seeds in parallel (each its own meter, pipeline and influxd):
  * a TCP meter (DSMR 5 telegrams every 100 ms) whose k-th telegram is identifiable: meter
    time T0 + k seconds, power_import_w = k, energy_import_t1_kwh = 100 + k / 1000;
  * `meterpipe run` with acquire -> process -> upload (InfluxDB 1.6 or daily files);
  * a tap on raw/ records every frame acquire published (what "acquire got");
  * for FAULT_S seconds a schedule drawn from random.Random(seed): kill -9 of upload, of
    process and of both at random moments, influxd hung (SIGSTOP) and later down (SIGTERM),
    one kill -9 of the supervisor (its workers go with it) and a restart;
  * then the meter stops, and the target must hold every telegram acquire got: missing 0
    (except frames published within durability_s before the supervisor kill), duplicates 0,
    values equal to what the meter sent. Telegrams the meter sent while no acquire was
    connected (supervisor down) are not readings acquire got.

Seeds: MP_FAULT_SEEDS="1,2,3" replays those; by default three are drawn from the clock and
printed. Timings are printed as info lines, never asserted.
"""
import base64
import json
import os
import random
import re
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request

import mptest
from mptest import alive

FAULT_S = 60
PERIOD_S = 0.1
DURABILITY_S = 1.0
DRAIN_TIMEOUT_S = 120

_lock = threading.Lock()
_results = {"passed": 0, "failed": 0}


def check(label, cond, what, detail=""):
    with _lock:
        _results["passed" if cond else "failed"] += 1
        d = str(detail)
        if len(d) > 1500:
            d = d[:1500] + "..."
        print("%s [%s] %s%s" % ("ok  " if cond else "FAIL", label, what,
                                (": " + d) if (not cond and d) else ""), flush=True)
    return cond


def info(label, text):
    with _lock:
        print("info [%s] %s" % (label, text), flush=True)


def seeds():
    env = os.environ.get("MP_FAULT_SEEDS", "").strip()
    if env:
        return [int(s) for s in env.split(",") if s.strip()]
    base = int(time.time() * 1000) % 1000000
    return [base, base + 1, base + 2]


def dsmr_time(when):
    try:
        import datetime
        from zoneinfo import ZoneInfo
        dt = datetime.datetime.fromtimestamp(when, ZoneInfo("Europe/Amsterdam"))
        return dt.strftime("%y%m%d%H%M%S") + ("S" if dt.dst() else "W")
    except Exception:  # no tz database: CET
        return time.strftime("%y%m%d%H%M%S", time.gmtime(when + 3600)) + "W"


def telegram(t0, k):
    lines = [
        "/ISk5\\2MT382-1000", "",
        "1-3:0.2.8(50)",
        "0-0:1.0.0(%s)" % dsmr_time(t0 + k),
        "0-0:96.1.1(4B384547303034303436333935353037)",
        "1-0:1.8.1(%010.3f*kWh)" % (100 + k / 1000.0), "1-0:1.8.2(000002.399*kWh)",
        "1-0:2.8.1(000002.444*kWh)", "1-0:2.8.2(000000.000*kWh)",
        "0-0:96.14.0(0002)",
        "1-0:1.7.0(%06.3f*kW)" % (k / 1000.0),
        "1-0:2.7.0(00.000*kW)",
        "1-0:32.7.0(0230.0*V)", "1-0:31.7.0(0.48*A)",
    ]
    body = ("\r\n".join(lines) + "\r\n!").encode()
    return body + b"%04X\r\n" % mptest.crc16(body)


K_RE = re.compile(rb"1-0:1\.7\.0\((\d+\.\d+)\*kW\)")


def k_of_frame(data):
    """k of a tapped raw frame (the JSON has bytes as base64, or text)."""
    for raw in (data.encode(errors="replace"), None):
        if raw is None:
            try:
                raw = base64.b64decode(data)
            except ValueError:
                return None
        m = K_RE.search(raw)
        if m:
            return int(round(float(m.group(1)) * 1000))
    return None


class Meter:
    """The TCP meter: telegram k every PERIOD_S while a client is connected."""

    def __init__(self, t0):
        self.t0 = t0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.sent = []      # (k, monotonic time)
        self.connects = []  # monotonic times of accepted connections
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        k = 0
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            self.connects.append(time.monotonic())
            c.settimeout(2)
            try:
                while not self.stop.is_set():
                    c.sendall(telegram(self.t0, k))
                    self.sent.append((k, time.monotonic()))
                    k += 1
                    time.sleep(PERIOD_S)
            except OSError:
                pass
            c.close()
        self.srv.close()


def query(url, q):
    u = url + "/query?" + urllib.parse.urlencode({"db": "mp", "q": q, "epoch": "ns"})
    try:
        with urllib.request.urlopen(u, timeout=20) as r:
            j = json.loads(r.read())
    except (OSError, ValueError):
        return None
    out = []
    for s in j.get("results", [{}])[0].get("series", []) or []:
        for v in s["values"]:
            out.append(dict(zip(s["columns"], v)))
    return out


def create_db(url):
    data = urllib.parse.urlencode({"q": 'CREATE DATABASE "mp"'}).encode()
    try:
        with urllib.request.urlopen(url + "/query", data=data, timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


LINE_RE = re.compile(r"^electricity,meter=m (\S+) (\d+)$")


def file_points(data_dir):
    """[(time ns, {field: value})] of every line of the day files."""
    out = []
    if not os.path.isdir(data_dir):
        return out
    for n in sorted(os.listdir(data_dir)):
        if not n.endswith(".lp"):
            continue
        with open(os.path.join(data_dir, n)) as f:
            for line in f:
                m = LINE_RE.match(line.rstrip("\n"))
                if not m:
                    continue
                fields = {}
                for kv in m.group(1).split(","):
                    key, _, v = kv.partition("=")
                    fields[key] = v
                out.append((int(m.group(2)) * 1000000000, fields))
    return out


class Run:
    """One seed: meter, influxd (target "influxdb1") or files, pipeline, tap, faults."""

    def __init__(self, seed, target):
        self.seed = seed
        self.target = target
        self.label = "%s seed %d" % (target, seed)
        self.rng = random.Random(seed)
        self.t0 = int(time.time())
        self.meter = Meter(self.t0)
        self.influx = None
        self.influx_ok = True
        # batch_age_s = 1: batches written between the kills, as with influxdb1
        upload = '[upload]\ntarget = "file"\nbatch_age_s = 1\n'
        if target == "influxdb1":
            # started here, one seed after the other (several influxd starting at once on a
            # loaded machine can take a port another one picked); new ports on a failure
            for _ in range(3):
                self.influx = mptest.InfluxServer(prefix="mpdur.")
                self.influx_ok = self.influx.start() and create_db(self.influx.url)
                if self.influx_ok:
                    break
                self.influx.remove()
            upload = ('[upload]\ntarget = "influxdb1"\nurl = "%s"\ndatabase = "mp"\n'
                      'batch_age_s = 1\ntimeout_s = 5\n' % self.influx.url)
        body = ('[[meter]]\nname = "m"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\n\n%s'
                % (self.meter.port, upload))
        self.p = mptest.Pipeline(body, general="watchdog_s = 10\ndurability_s = %g"
                                 % DURABILITY_S, prefix="mpdur.")
        self.data_dir = os.path.join(self.p.dir, "state", "data")
        self.tap = None
        self.events = []          # (monotonic time, what)
        self.sup_kill = None      # monotonic time of the supervisor kill
        self.bad_pids = []        # status pid values that were neither null nor > 0
        self.drain_s = None

    # --- faults
    def schedule(self):
        r = self.rng
        ev = []
        t = r.uniform(1, 4)
        while t < FAULT_S:
            ev.append((t, "kill", ("upload",)))
            t += r.uniform(1.5, 5)
        t = r.uniform(2, 6)
        while t < FAULT_S:
            ev.append((t, "kill", ("process",)))
            t += r.uniform(3, 9)
        for _ in range(3):
            ev.append((r.uniform(3, FAULT_S - 3), "kill", ("upload", "process")))
        if self.influx:
            a = r.uniform(5, 12)
            ev.append((a, "influx_stop", ()))
            ev.append((a + r.uniform(5, 10), "influx_cont", ()))
            b = r.uniform(26, 32)
            ev.append((b, "influx_down", ()))
            ev.append((b + r.uniform(5, 10), "influx_up", ()))
        ev.append((r.uniform(44, 52), "supervisor_kill", ()))
        return sorted(ev)

    def kill_workers(self, names):
        st = self.p.status()
        if not st:
            return
        for w in st["workers"]:
            pid = w.get("pid")
            if pid is not None and (not isinstance(pid, int) or pid <= 0):
                self.bad_pids.append(pid)
            if w["name"] not in names or not pid or pid <= 0:
                continue
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"meterpipe-" + w["name"].encode() not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def kill_supervisor(self):
        self.p.status()  # remember the worker pids
        self.sup_kill = time.monotonic()
        self.p.proc.kill()
        self.p.proc.wait()
        # its workers end with it (PR_SET_PDEATHSIG); wait for them before starting again
        mptest.wait_for(lambda: not any(alive(pid) for pid in self.p.seen_pids), 20, 0.05)
        time.sleep(self.rng.uniform(0.5, 2))
        self.p.start()

    def run_faults(self):
        start = time.monotonic()
        for t, what, args in self.schedule():
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.events.append((time.monotonic(), what + " " + " ".join(args)))
            if what == "kill":
                self.kill_workers(args)
            elif what == "influx_stop":
                self.influx.proc.send_signal(signal.SIGSTOP)
            elif what == "influx_cont":
                self.influx.proc.send_signal(signal.SIGCONT)
            elif what == "influx_down":
                self.influx.stop()
            elif what == "influx_up":
                self.influx.start()
                self.influx_back = time.monotonic()
            elif what == "supervisor_kill":
                self.kill_supervisor()
        left = start + FAULT_S - time.monotonic()
        if left > 0:
            time.sleep(left)

    # --- checks
    def stored(self):
        """{k: [(time ns, fields)]} of what the target holds."""
        if self.influx:
            rows = query(self.influx.url, "SELECT power_import_w, energy_import_t1_kwh FROM "
                         "electricity WHERE meter = 'm'")
            if rows is None:
                return None
            pts = [(r["time"], {"power_import_w": r["power_import_w"],
                                "energy_import_t1_kwh": r["energy_import_t1_kwh"]}) for r in rows]
        else:
            pts = file_points(self.data_dir)
        out = {}
        for t, f in pts:
            try:
                k = int(round(float(f["power_import_w"])))
            except (KeyError, ValueError, TypeError):
                k = -1
            out.setdefault(k, []).append((t, f))
        return out

    def expected(self):
        """(ks acquire got, ks the meter sent that must be stored)."""
        got = set()
        for m in self.tap.messages("raw/"):
            k = k_of_frame(m.get("envelope", {}).get("raw", {}).get("data", ""))
            if k is not None:
                got.add(k)
        # frames acquire may have got and lost with the supervisor kill: published within
        # durability_s before it; frames nobody read: sent while no acquire was connected
        reconnect = min([c for c in self.meter.connects if c > self.sup_kill] or [1e18])
        excused = {k for k, t in self.meter.sent
                   if self.sup_kill - DURABILITY_S - 0.5 <= t <= reconnect}
        must = {k for k, _ in self.meter.sent} - excused
        return got, must, excused

    def run(self):
        L = self.label
        info(L, "seed %d (replay: MP_FAULT_SEEDS=%d)" % (self.seed, self.seed))
        try:
            if self.influx:
                if not check(L, self.influx_ok, "influxd runs with database mp"):
                    return
            self.tap = mptest.Tap(self.p.run_dir, ["raw/"], stop_wait=5)
            self.p.start()
            if not check(L, self.p.wait_running(30) is not None, "pipeline runs"):
                return
            self.run_faults()
            if not check(L, self.p.wait_running(60) is not None,
                         "every worker runs again after the faults"):
                return
            self.meter.stop.set()
            self.meter.t.join(5)
            t_end = time.monotonic()
            got, must, excused = self.expected()
            want = must | (got - excused)
            ok = mptest.wait_for(lambda: (lambda s: s is not None and want <= set(s))(
                self.stored()), DRAIN_TIMEOUT_S, 0.5)
            self.drain_s = time.monotonic() - t_end
            self.verify(got, must, excused, bool(ok))
        finally:
            self.finish()

    def verify(self, got, must, excused, drained):
        L = self.label
        s = self.stored() or {}
        sent = {k for k, _ in self.meter.sent}
        info(L, "meter sent %d telegrams, the tap saw %d frames, %d excused around the "
             "supervisor kill; faults: %s" % (len(sent), len(got), len(excused),
                                              [w for _, w in self.events]))
        info(L, "all points stored %.1f s after the meter stopped" % self.drain_s)
        missing_got = sorted(k for k in got - set(s) if k not in excused)
        lost_in_window = sorted(k for k in got & excused if k not in s)
        check(L, drained and not missing_got,
              "every frame acquire published is stored (missing %d)" % len(missing_got),
              missing_got[:50])
        info(L, "frames acquire published within durability_s before the supervisor kill "
             "and not stored: %d" % len(lost_in_window))
        missing_sent = sorted(must - set(s))
        check(L, not missing_sent, "every telegram sent while acquire was up is stored "
              "(missing %d)" % len(missing_sent), missing_sent[:50])
        dups = sorted(k for k, v in s.items() if len(v) > 1)
        check(L, not dups, "no point stored twice (duplicates %d)" % len(dups),
              [(k, s[k]) for k in dups[:10]])
        strange = sorted(k for k in s if k not in sent)
        check(L, not strange, "no point the meter never sent", strange[:20])
        wrong = []
        for k, v in s.items():
            if k not in sent:
                continue
            t, f = v[0]
            e = float(str(f.get("energy_import_t1_kwh")).rstrip("i"))
            if t != (self.t0 + k) * 1000000000 or abs(e - (100 + k / 1000.0)) > 1e-9:
                wrong.append((k, t, f))
        check(L, not wrong, "every stored value and timestamp equals the telegram's",
              wrong[:10])
        check(L, not self.bad_pids, "status never reports a pid that is not a running "
              "worker's (null when not running)", self.bad_pids[:10])
        log = "\n".join(self.p.log())
        check(L, mptest.no_crash_text(log), "no crash in the logs",
              [l for l in self.p.log() if not mptest.no_crash_text(l)][:5])

    def finish(self):
        if self.tap:
            self.tap.stop()
        self.meter.stop.set()
        if self.influx and self.influx.proc and self.influx.proc.poll() is None:
            self.influx.proc.send_signal(signal.SIGCONT)
        self.p.stop()
        if self.influx:
            self.influx.remove()


def main(target):
    if not mptest.BIN_DIR or not os.path.exists(mptest.MP):
        print("FAIL meterpipe not built (MP_BIN_DIR)")
        return 1
    runs = [Run(s, target) for s in seeds()]
    threads = [threading.Thread(target=r.run) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("%d passed, %d failed" % (_results["passed"], _results["failed"]), flush=True)
    return 1 if _results["failed"] or not _results["passed"] else 0
