"""mptest_actuate: what the actuate end-to-end scripts share (test_e2e_actuate_*.py).

A TCP server plays a P1 dongle (P1Server): it sends one DSMR 5 telegram with a chosen net power
whenever the test wants, so the test controls time. Env is a temp dir with a config, a switch
log and the scripts the relays run (type = "command"); Tap reads `meterpipe tap relay/
health/actuate` with wall arrival times. cleanup() ends every process and removes every temp
dir these helpers started or made (run at exit too).
"""
import atexit
import datetime
import json
import os
import shutil
import socket
import tempfile
import threading
import time

import mptest
from mptest import wait_for

STEP = 0.8  # seconds between telegrams in the timed sequences (on/off delays are 2 s)


started = []  # every Popen we started, to clean up
temp_dirs = []


def is_sleep30(pid):
    """True when pid is the `sleep 30` our hang.sh exec'd (guards against pid reuse)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read() == b"sleep\x0030\x00"
    except OSError:
        return False



# ---- DSMR 5 telegrams -----------------------------------------------------------------------


def dsmr_time(when):
    """0-0:1.0.0 value: Dutch local time + S (summer) or W (winter), as meters send it."""
    try:
        from zoneinfo import ZoneInfo
        dt = datetime.datetime.fromtimestamp(when, ZoneInfo("Europe/Amsterdam"))
        return dt.strftime("%y%m%d%H%M%S") + ("S" if dt.dst() else "W")
    except Exception:  # no tz database: CET
        return time.strftime("%y%m%d%H%M%S", time.gmtime(when + 3600)) + "W"

def telegram(net_w, when=None):
    """A DSMR 5 telegram (shape of tests/data/dsmr/v5.txt) whose net power is net_w."""
    when = time.time() if when is None else when
    ts = dsmr_time(when)
    imp = max(net_w, 0) / 1000.0
    exp = max(-net_w, 0) / 1000.0
    lines = [
        "/ISk5\\2MT382-1000", "",
        "1-3:0.2.8(50)",
        "0-0:1.0.0(%s)" % ts,
        "0-0:96.1.1(4B384547303034303436333935353037)",
        "1-0:1.8.1(000004.426*kWh)", "1-0:1.8.2(000002.399*kWh)",
        "1-0:2.8.1(000002.444*kWh)", "1-0:2.8.2(000000.000*kWh)",
        "0-0:96.14.0(0002)",
        "1-0:1.7.0(%06.3f*kW)" % imp,
        "1-0:2.7.0(%06.3f*kW)" % exp,
        "0-0:96.7.21(00013)", "0-0:96.7.9(00000)",
        "1-0:99.97.0(0)(0-0:96.7.19)",
        "1-0:32.32.0(00000)", "1-0:52.32.0(00000)", "1-0:72.32.0(00000)",
        "1-0:32.36.0(00000)", "1-0:52.36.0(00000)", "1-0:72.36.0(00000)",
        "0-0:96.13.0()",
        "1-0:32.7.0(0230.0*V)", "1-0:52.7.0(0230.0*V)", "1-0:72.7.0(0229.0*V)",
        "1-0:31.7.0(0.48*A)", "1-0:51.7.0(0.44*A)", "1-0:71.7.0(0.86*A)",
        "1-0:21.7.0(00.070*kW)", "1-0:41.7.0(00.032*kW)", "1-0:61.7.0(00.142*kW)",
        "1-0:22.7.0(00.000*kW)", "1-0:42.7.0(00.000*kW)", "1-0:62.7.0(00.000*kW)",
        "0-1:24.1.0(003)",
        "0-1:96.1.0(3232323241424344313233343536373839)",
        "0-1:24.2.1(170102161005W)(00000.107*m3)",
    ]
    body = ("\r\n".join(lines) + "\r\n!").encode()
    return body + b"%04X\r\n" % mptest.crc16(body)


class P1Server:
    """A TCP server acquire connects to (source = "tcp"); send() writes one telegram."""

    def __init__(self):
        self.srv, self.port = mptest.listen_tcp()
        self.lock = threading.Lock()
        self.conn = None
        # (wall time after the last byte was written, net_w, wall time before the write): the
        # reader may take the bytes before this thread gets the CPU back to stamp "after"
        self.sends = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.conn:
                    self.conn.close()
                self.conn = c

    def connected(self):
        with self.lock:
            return self.conn is not None

    def send(self, net_w):
        return self.write(telegram(net_w), net_w)

    def write(self, data, net_w):
        """Writes one telegram (bytes) whose net power is net_w; False when not connected."""
        with self.lock:
            if not self.conn:
                return False
            t_before = time.time()
            try:
                self.conn.sendall(data)
            except OSError:
                self.conn.close()
                self.conn = None
                return False
            self.sends.append((time.time(), net_w, t_before))
            return True

    def close(self):
        self.closed = True
        try:
            self.srv.close()
        except OSError:
            pass
        with self.lock:
            if self.conn:
                self.conn.close()
                self.conn = None


class Feeder:
    """Sends a telegram with the current value every `period` seconds (background)."""

    def __init__(self, server, period=STEP):
        self.server, self.period = server, period
        self.value = None  # None = paused
        self.stop_ev = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop_ev.wait(self.period):
            v = self.value
            if v is not None:
                self.server.send(v)

    def stop(self):
        self.stop_ev.set()


class Tap(mptest.Tap):
    """`meterpipe tap` in the background; lines kept with their arrival (wall) time."""

    def __init__(self, cfg, prefixes):
        mptest.Tap.__init__(self, None, prefixes, config=cfg, clock=time.time,
                            keep_stderr=False)
        started.append(self.proc)

    def events(self, since=0.0):
        """Relay events after wall time `since`: (time, RelayEvent dict with defaults)."""
        out = []
        with self.lock:
            msgs = list(self.items)
        for t, o in msgs:
            if t < since or not o.get("topic", "").startswith("relay/"):
                continue
            ev = dict(o["envelope"].get("relay", {}))
            for k, d in (("old_state", False), ("new_state", False), ("ok", False),
                         ("reason", ""), ("mode", ""), ("error", "")):
                ev.setdefault(k, d)
            ev["instance"] = o["envelope"].get("instance_id")
            out.append((t, ev))
        return out

    def health(self, since=0.0):
        with self.lock:
            return [(t, o["envelope"].get("health", {})) for t, o in self.items
                    if t >= since and o.get("topic") == "health/actuate"]


def Supervisor(cfg):
    sup = mptest.Supervisor(cfg)
    started.append(sup.proc)
    return sup


class Env:
    """Temp dir with a config, a switch log and the scripts the relays run."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="mpe.", dir="/tmp")
        temp_dirs.append(self.path)
        self.run_dir = os.path.join(self.path, "run")
        self.log = os.path.join(self.path, "switch.log")
        self.switch = self.script("switch.sh",
                                  '#!/bin/sh\necho "$1 $2 $(date +%%s.%%N)" >> %s\n' % self.log)
        self.fail_flag = os.path.join(self.path, "fail.flag")  # fail.sh fails while it exists
        self.fail = self.script("fail.sh",
                                '#!/bin/sh\necho "$1 $2 $(date +%%s.%%N)" >> %s\n'
                                '[ -e %s ] && exit 1\nexit 0\n' % (self.log, self.fail_flag))
        self.pids = os.path.join(self.path, "hang.pids")
        self.hang = self.script("hang.sh", '#!/bin/sh\necho "$1 $2 $(date +%%s.%%N)" >> %s\n'
                                'echo $$ >> %s\nexec sleep 30\n' % (self.log, self.pids))

    def script(self, name, text):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o755)
        return p

    def calls(self, since=0.0):
        """Command calls: (wall time, relay, on|off)."""
        try:
            with open(self.log) as f:
                rows = [l.split() for l in f if l.strip()]
        except OSError:
            return []
        return [(float(r[2]), r[0], r[1]) for r in rows if len(r) == 3 and float(r[2]) >= since]

    def hang_pids(self):
        try:
            with open(self.pids) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def write_config(self, port, relays, watchdog_s=2):
        cfg = os.path.join(self.path, "meterpipe.toml")
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\nwatchdog_s = %d\n\n'
                    '[[meter]]\nname = "home"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\n\n'
                    '[upload]\ntarget = "file"\n\n%s'
                    % (self.run_dir, os.path.join(self.path, "state"), watchdog_s, port, relays))
        return cfg


def relay_toml(name, on_cmd, off_cmd, on_below=-1500, off_above=100, on_delay=2, off_delay=2,
               stale=5, timeout=5):
    return ('[[relay]]\nname = "%s"\nmeter = "home"\non_below_w = %s\noff_above_w = %s\n'
            'on_delay_s = %s\noff_delay_s = %s\nmin_on_s = 0\nmin_off_s = 0\n'
            'max_switches_per_hour = 0\nfailsafe = "off"\nstale_after_s = %s\n'
            '[relay.output]\ntype = "command"\non_command = %s\noff_command = %s\n'
            'timeout_s = %s\n\n'
            % (name, on_below, off_above, on_delay, off_delay, stale, json.dumps(on_cmd),
               json.dumps(off_cmd), timeout))


def summary(evs):
    return [("on" if e["new_state"] else "off", e["mode"], e["ok"], e["reason"]) for _, e in evs]


def warm_up(server, tap, sup, value=0):
    """Sends telegrams with `value` until actuate counts readings (pipeline connected)."""
    def counted():
        h = tap.health()
        if h and int(h[-1][1].get("counters", {}).get("readings", 0)) > 0:
            return True
        server.send(value)
        return False
    if not wait_for(lambda: server.connected(), 8):
        return False
    return wait_for(counted, 12, 0.3)


def run_sequence(server, tap, env, values, relay="boiler"):
    """Sends values STEP apart; returns per telegram index the events and command calls that
    happened after it (and before the next one)."""
    per = []
    for v in values:
        t0 = time.time()
        server.send(v)
        time.sleep(STEP)
        t1 = time.time()
        evs = [(t, e) for t, e in tap.events(t0) if t < t1 and e["relay"] == relay]
        cs = [c for c in env.calls(t0) if c[0] < t1 and c[1] == relay]
        per.append((evs, cs))
    return per


def switched_at(per):
    return [(i, summary(evs), [c[2] for c in cs]) for i, (evs, cs) in enumerate(per) if evs or cs]


def cleanup():
    """Kills what is still running of what these helpers started; removes their temp dirs."""
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup)
