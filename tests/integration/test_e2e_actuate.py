#!/usr/bin/python3
"""End-to-end test of relay switching through the supervisor (issue 5).

A TCP server in this test plays a P1 dongle: it sends one DSMR 5 telegram with a chosen net
power whenever the test wants, so the test controls time. `meterpipe run` starts acquire
(source = "tcp") -> process -> actuate; relays switch through type = "command" scripts that
append to a log. Relay events are read with `meterpipe tap relay/ health/actuate`.

Environment (set by ctest): MP_BIN_DIR = the build's bin dir. Standard library only.
Prints one line per check and a summary `N passed, M failed`; exits 1 on any failure.
"""
import datetime
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import MP, alive, procs_using, wait_for  # noqa: E402

STEP = 0.8  # seconds between telegrams in the timed sequences (on/off delays are 2 s)

ck = mptest.Checker(handle_signals=False, max_detail=None)
check = ck.check
started = []  # every Popen we started, to clean up
temp_dirs = []


def is_sleep30(pid):
    """True when pid is the `sleep 30` our hang.sh exec'd (guards against pid reuse)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read() == b"sleep\x0030\x00"
    except OSError:
        return False


def run_cli(args, timeout=15):
    return mptest.run_cli(args, timeout=timeout)


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
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
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


# ---------------------------------------------------------------------------------------------
def test_rules_failsafe_override_restart():
    env = Env()
    server = P1Server()
    cfg = env.write_config(server.port, relay_toml("boiler", [env.switch, "boiler", "on"],
                                                   [env.switch, "boiler", "off"]))
    tap = Tap(cfg, ["relay/", "health/actuate"])
    sup = Supervisor(cfg)
    feeder = None
    try:
        st = wait_for(sup.all_running, 8, 0.2)
        if not check(st is not None, "supervisor runs acquire, process, actuate, upload",
                     sup.log()[-6:]):
            return
        names = [w["name"] for w in st["workers"]]
        check("actuate" in names, "a [[relay]] makes the supervisor start actuate", names)
        if not check(warm_up(server, tap, sup), "telegrams from the TCP source reach actuate",
                     sup.log()[-6:]):
            return

        # --- start: no data yet and no persisted state -> failsafe off, once
        calls = env.calls()
        check([c[1:] for c in calls] == [("boiler", "off")],
              "start without data: the off command runs once (failsafe off)", calls)
        logs = "\n".join(sup.log())
        check(re.search(r"^actuate: info: relay boiler off \(failsafe\): no data from meter "
                        r"'home' yet: failsafe off$", logs, re.M),
              "start: actuate logs the failsafe switch with its reason",
              [l for l in sup.log() if "boiler" in l])

        # --- 1. hysteresis and delays (telegrams STEP = 0.8 s apart, delays 2 s)
        time.sleep(1.0)
        t_seq = time.time()
        between = [0, -1000, 50, -1400, 100, -1500]  # never below -1500, never above 100
        per = run_sequence(server, tap, env, between)
        check(switched_at(per) == [], "relay off: values between the thresholds (and equal to "
              "them) switch nothing", switched_at(per))
        # below -1500: a streak interrupted by -1000 starts again; on after 2 s of readings
        per = run_sequence(server, tap, env, [-2000, -2000, -1000, -2000, -2000, -2000, -2000])
        sw = switched_at(per)
        check(len(sw) == 1 and sw[0][0] == 6,
              "on at the 3rd telegram of an uninterrupted streak below on_below_w (2.4 s >= "
              "on_delay_s 2), not before; the interrupted streak did not count", sw)
        if sw:
            i, evs, cs = sw[0]
            check(len(evs) == 1 and evs[0][:3] == ("on", "auto", True) and
                  re.fullmatch(r"net -2000 W below -1500 W for 2 s", evs[0][3]),
                  "on event: mode auto, ok, reason in words", evs)
            check(cs == ["on"], "the on command ran once, after the same telegram", cs)
        per = run_sequence(server, tap, env, [-1000, 0, 100, -1600, 50])
        check(switched_at(per) == [], "relay on: values between the thresholds switch nothing",
              switched_at(per))
        per = run_sequence(server, tap, env, [500, 500, 50, 500, 500, 500, 500])
        sw = switched_at(per)
        check(len(sw) == 1 and sw[0][0] == 6,
              "off at the 3rd telegram of an uninterrupted streak above off_above_w, not "
              "before", sw)
        if sw:
            i, evs, cs = sw[0]
            check(len(evs) == 1 and evs[0][:3] == ("off", "auto", True) and
                  re.fullmatch(r"net 500 W above 100 W for 2 s", evs[0][3]),
                  "off event: mode auto, ok, reason in words", evs)
            check(cs == ["off"], "the off command ran once, after the same telegram", cs)
        evs = tap.events(t_seq)
        check(all(e["relay"] == "boiler" for _, e in evs) and
              [(e["old_state"], e["new_state"]) for _, e in evs] == [(False, True), (True, False)],
              "events carry old and new state", [(e["old_state"], e["new_state"]) for _, e in evs])
        # each names the reading it was decided on: its receive time at acquire lies between
        # the moment the write of the last telegram before the event began and the moment
        # the event arrived (the stamp after sendall() can come later than acquire's read)
        sends = [t_before for _, _, t_before in server.sends]
        for t_ev, e in evs:
            trig = int(e.get("trigger_receive_time_ns", 0)) / 1e9
            sent = max([t for t in sends if t <= t_ev + 0.001] or [0])
            check(sent - 0.001 <= trig <= t_ev + 0.001 and int(e.get("trigger_receive_mono_ns", 0)),
                  "%s event: trigger_receive_time_ns is the triggering telegram's arrival "
                  "(sent %.3f, trigger %.3f, event seen %.3f)" % (
                      "on" if e["new_state"] else "off", sent, trig, t_ev))

        # --- 2. failsafe: on, then no more telegrams -> off after stale_after_s (5 s)
        per = run_sequence(server, tap, env, [-2000, -2000, -2000, -2000])
        check([s[0] for s in switched_at(per)] == [3], "on again before the failsafe test",
              switched_at(per))
        t_last = server.sends[-1][0]
        t_quiet = time.time()  # after the on event of the last telegram
        ev = wait_for(lambda: [e for e in tap.events(t_quiet) if e[1]["relay"] == "boiler"], 9,
                      0.1)
        if check(ev, "silence: a relay event comes", sup.log()[-4:]):
            t, e = ev[0]
            check(5.0 <= t - t_last <= 7.0,
                  "failsafe switch %.1f s after the last telegram (stale_after_s = 5; ticks "
                  "once a second)" % (t - t_last))
            check((e["new_state"], e["mode"], e["ok"]) == (False, "failsafe", True) and
                  re.fullmatch(r"no fresh data from meter 'home' for [5-7] s: failsafe off",
                               e["reason"]), "failsafe event: off, mode failsafe, reason", e)
            check("trigger_receive_time_ns" not in e,
                  "failsafe event: no trigger reading (decided on a timer)", e)
            check([c[2] for c in env.calls(t_quiet)] == ["off"],
                  "failsafe: the off command ran once", env.calls(t_quiet))
        time.sleep(1.5)
        check(len(tap.events(t_quiet)) == 1, "failsafe: one event only",
              summary(tap.events(t_quiet)))

        # --- 3. manual override while the meter reports 500 W import (auto would keep it off)
        feeder = Feeder(server)
        feeder.value = 500
        time.sleep(2 * STEP)
        t_cmd = time.time()
        r = run_cli(["relay", "boiler", "on", "--for", "5s", "-c", cfg])
        check(r.returncode == 0 and r.stdout.decode().strip() == "relay boiler: on for 5s",
              "`meterpipe relay boiler on --for 5s`: exit 0", (r.returncode, r.stdout, r.stderr))
        ev = wait_for(lambda: tap.events(t_cmd), 2, 0.02)
        if check(ev, "manual override: an event comes"):
            t, e = ev[0]
            check(t - t_cmd < 1.0, "manual on within 1 s of the command (%.2f s)" % (t - t_cmd))
            check((e["new_state"], e["mode"], e["ok"]) == (True, "manual", True) and
                  re.fullmatch(r"manual override on \(expires in 5 s\)", e["reason"]),
                  "override event: on, mode manual, reason", e)
            check("trigger_receive_time_ns" not in e, "override event: no trigger reading", e)
        check([c[2] for c in env.calls(t_cmd)] == ["on"], "override: the on command ran",
              env.calls(t_cmd))
        time.sleep(3.5)
        check(len(tap.events(t_cmd)) == 1,
              "during the override 500 W import for > off_delay_s switches nothing",
              summary(tap.events(t_cmd)))
        w = sup.worker("actuate")
        check(w and w["gauges"].get("relay_boiler") == 1, "status: gauge relay_boiler = 1",
              w and w["gauges"])
        r = run_cli(["status"] + sup.status_args)
        check(r.returncode == 0 and re.search(r"^boiler +on +manual +on \([1-6] s left\) +"
                                              r"manual override on", r.stdout.decode(), re.M),
              "`meterpipe status` shows the relay on, its manual override and its expiry",
              (r.stdout + r.stderr).decode())
        ev = wait_for(lambda: tap.events(t_cmd)[1:], 4, 0.05)
        if check(ev, "after the override expires an event comes", summary(tap.events(t_cmd))):
            t, e = ev[0]
            check(5.0 <= t - t_cmd <= 6.6,
                  "back to auto at expiry: off %.1f s after the override (--for 5s)"
                  % (t - t_cmd))
            check((e["new_state"], e["mode"], e["ok"]) == (False, "auto", True) and
                  re.fullmatch(r"net 500 W above 100 W for \d+ s", e["reason"]),
                  "expiry event: auto rules switch off (500 W import)", e)
        time.sleep(0.3)
        t_ref = time.time()
        r = run_cli(["relay", "NOPE", "on", "-c", cfg])
        err = r.stderr.decode().strip()
        check(r.returncode == 1 and err == "no relay named NOPE",
              "`meterpipe relay NOPE on`: exit 1, clear error", (r.returncode, err))
        r = run_cli(["relay", "boiler", "maybe", "-c", cfg])
        err = r.stderr.decode().strip()
        check(r.returncode == 2 and len(err.splitlines()) == 1 and "on, off or auto" in err,
              "`meterpipe relay boiler maybe`: exit 2, one line", (r.returncode, err))
        r = run_cli(["relay", "boiler", "on", "--for", "soon", "-c", cfg])
        check(r.returncode == 2 and "duration" in r.stderr.decode(),
              "`--for soon`: exit 2", (r.returncode, r.stderr))
        time.sleep(0.5)
        check(env.calls(t_ref) == [] and tap.events(t_ref) == [],
              "the refused commands switched nothing", (env.calls(t_ref),
                                                        summary(tap.events(t_ref))))

        # --- 4. kill -9 actuate while the relay is on: no switch after the restart
        t_on = time.time()
        feeder.value = -2000
        ev = wait_for(lambda: tap.events(t_on), 5, 0.05)
        check(ev and summary(ev)[0][:3] == ("on", "auto", True), "relay on again (auto)",
              summary(ev or []))
        state_file = os.path.join(env.path, "state", "actuate.state")
        check(os.path.exists(state_file), "relay state persisted in state_dir/actuate.state")

        def kill_and_watch(what, watch_s=5.0):
            w = sup.worker("actuate")
            old_pid = w["pid"] if w else -1
            n_log = len(sup.log())
            t_kill = time.time()
            os.kill(old_pid, signal.SIGKILL)
            w2 = wait_for(lambda: (lambda x: x if x and x["pid"] not in (old_pid, -1, 0, None) and
                                   x["last_health_age_s"] is not None else None)(
                sup.worker("actuate")), 6, 0.1)
            check(w2 is not None, "%s: kill -9 actuate, the supervisor restarts it" % what,
                  sup.log()[-4:])
            time.sleep(watch_s)
            evs = tap.events(t_kill)
            # the tap may miss the very first event of the new instance (it connects anew):
            # the command log and actuate's own log lines catch it anyway
            # A restart may re-assert the restored state once (mode "restore": a GPIO line or
            # a Shelly may have lost it), but never switch: no other event, no "off" call.
            switched = [l for l in sup.log()[n_log:]
                        if re.match(r"^actuate: (info|warn): relay boiler[: ]", l) and
                        "command on:" not in l and "(restore)" not in l]
            calls = [(round(t - t_kill, 2), r, s) for t, r, s in env.calls(t_kill)]
            restore = [e for e in summary(evs) if e[1] == "restore"]
            others = [e for e in summary(evs) if e[1] != "restore"]
            check(others == [] and all(s == "on" for _, _, s in calls) and len(calls) <= 1 and
                  switched == [] and all(e[0] == "on" for e in restore),
                  "%s: after the restart no switch: at most the restored \"on\" re-asserted "
                  "once, no other event or command call (relay stays on)"
                  % what, (summary(evs), calls, switched))
            w = sup.worker("actuate")
            check(w and w["gauges"].get("relay_boiler") == 1,
                  "%s: after the restart status gauge relay_boiler = 1" % what,
                  w and w["gauges"])

        # (a) crash 1 s after the switch (the state file was written by that switch)
        time.sleep(1)
        kill_and_watch("crash 1 s after the last switch", 4.0)
        # (b) crash long after the last switch (more than stale_after_s = 5 s; telegrams kept
        # coming all the time): a crash can come at any time
        time.sleep(3)
        kill_and_watch("crash 8 s after the last switch", 5.0)
        feeder.value = None

        # --- 5. actuate decodes acquire's frames itself: switching does not wait for process
        # and goes on while process is stopped (and then restarted by the watchdog)
        time.sleep(2 * STEP)
        w = sup.worker("process")
        t_stop = time.time()
        os.kill(w["pid"], signal.SIGSTOP)
        per = run_sequence(server, tap, env, [500, 500, 500, 500])
        # (the tap may deliver the restored "on" of the restart above late: not a switch)
        sw = [(i, [e for e in evs if e[1] != "restore"], cs) for i, evs, cs in switched_at(per)]
        sw = [x for x in sw if x[1] or x[2]]
        check(len(sw) == 1 and sw[0][0] == 3 and [e[:2] for e in sw[0][1]] == [("off", "auto")]
              and sw[0][2] == ["off"],
              "process stopped: off at the 4th telegram above off_above_w, as with process "
              "running", sw)
        w2 = wait_for(lambda: (lambda x: x if x and x["pid"] != w["pid"] else None)(
            sup.worker("process")), 6, 0.1)
        check(w2 is not None and any(re.match(r"^supervisor: warn: process .*heartbeat", l)
                                     for l in sup.log()),
              "the stopped process was restarted by the watchdog meanwhile",
              sup.log()[-5:])
        if w2 is None:
            os.kill(w["pid"], signal.SIGCONT)
        hs = [h for _, h in tap.health(t_stop)]
        check(hs and int(hs[-1].get("counters", {}).get("decode_errors", 0)) == 0,
              "actuate decoded every frame (decode_errors 0)", hs[-1:] if hs else None)

        logs = sup.log()
        bad = [l for l in logs if any(x in l for x in ("terminate called", "Segmentation",
                                                        "what():", "Aborted"))]
        check(not bad, "no crash in the logs", bad[:3])
    finally:
        if feeder:
            feeder.stop()
        sup.stop()
        tap.stop()
        server.close()
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)


def test_failing_and_hanging_commands():
    env = Env()
    server = P1Server()
    relays = (relay_toml("flaky", [env.fail, "flaky", "on"], [env.switch, "flaky", "off"],
                         on_below=-100, on_delay=0, off_delay=0, stale=30) +
              relay_toml("hang", [env.hang, "hang", "on"], [env.switch, "hang", "off"],
                         on_below=-100, on_delay=0, off_delay=0, stale=30, timeout=3))
    cfg = env.write_config(server.port, relays, watchdog_s=2)
    tap = Tap(cfg, ["relay/", "health/actuate"])
    sup = Supervisor(cfg)
    feeder = Feeder(server, 0.5)
    try:
        if not check(wait_for(sup.all_running, 8, 0.2) is not None, "second supervisor runs",
                     sup.log()[-6:]):
            return
        if not check(warm_up(server, tap, sup), "telegrams reach actuate", sup.log()[-6:]):
            return
        time.sleep(0.5)
        open(env.fail_flag, "w").close()
        t0 = time.time()
        server.send(-2000)
        feeder.value = -2000
        ages = []
        flaky_gauge = []  # (time, relay_flaky gauge) while the first attempt has failed
        end = time.monotonic() + 8.5
        while time.monotonic() < end:
            w = sup.worker("actuate")
            if w and w["last_health_age_s"] is not None:
                ages.append(w["last_health_age_s"])
            fl = [e for _, e in tap.events(t0) if e["relay"] == "flaky"]
            if len(fl) == 1 and w:
                flaky_gauge.append((time.time(), w["gauges"].get("relay_flaky"),
                                    w["counters"].get("switch_failures_flaky", 0)))
                if len(flaky_gauge) == 3 and os.path.exists(env.fail_flag):
                    os.unlink(env.fail_flag)  # the retry will succeed
            time.sleep(0.2)
        evs = tap.events(t0)
        fl = [(t, e) for t, e in evs if e["relay"] == "flaky"]
        hg = [(t, e) for t, e in evs if e["relay"] == "hang"]
        if check(fl, "failing command: an event comes", summary(evs)):
            t, e = fl[0]
            check(t - t0 < 1.0, "the failing switch is reported at once (%.2f s), not after the "
                  "hanging command of the other relay" % (t - t0))
            check((e["old_state"], e["new_state"], e["ok"], e["mode"]) ==
                  (False, False, False, "auto") and
                  re.fullmatch(r"'.*fail\.sh' failed with exit code 1", e["error"]),
                  "failing command: ok=false, state stays off, error in words", e)
        gauges_seen = [g for t, g, n in flaky_gauge if n >= 1]
        check(gauges_seen and all(g == 0 for g in gauges_seen),
              "after the failed switch status shows relay_flaky = 0 (not believed on), "
              "switch_failures_flaky counted", flaky_gauge)
        check(len(fl) == 2 and fl[1][1]["ok"] and fl[1][1]["new_state"] and
              re.fullmatch(r"net -2000 W below -100 W for [4-6] s \(retry 1\)",
                           fl[1][1]["reason"]) and 4.5 <= fl[1][0] - fl[0][0] <= 6.5,
              "the engine retries after about 5 s (retry_base_s); the retry switches on",
              [(round(t - t0, 1), e["reason"], e["ok"]) for t, e in fl])
        ons = [c for c in env.calls(t0) if c[1] == "flaky" and c[2] == "on"]
        check(len(ons) == len(fl) == 2, "the on command ran once per attempt", env.calls(t0))
        w = sup.worker("actuate")
        check(w and w["gauges"].get("relay_flaky") == 1,
              "after the successful retry status shows relay_flaky = 1", w and w["gauges"])
        if check(hg, "hanging command: an event comes", summary(evs)):
            t, e = hg[0]
            check(2.8 <= t - t0 <= 4.0 and not e["ok"] and not e["new_state"] and
                  re.fullmatch(r"'.*hang\.sh' timed out after 3000 ms \(killed\)", e["error"]),
                  "hanging command: timeout_s = 3 -> ok=false after %.1f s" % (t - t0), e)
        pids = env.hang_pids()
        check(pids and not alive(pids[0]), "the timed-out command was killed", pids)
        w = sup.worker("actuate")
        check(w and w["restarts"] == 0, "a hanging command does not get actuate restarted "
              "(watchdog_s = 2 < timeout_s = 3)", w)
        check(ages and max(ages) < 1.6,
              "actuate heartbeat stays fresh while a command hangs (max age %.2f s)"
              % (max(ages) if ages else -1))
        check(w and w["gauges"].get("relay_hang") == 0, "status: relay_hang = 0",
              w and w["gauges"])

        # kill -9 actuate while a hanging command runs: the command must not outlive it
        # (first attempt at t0, timeout at t0 + 3 s, retry 5 s later, in flight for 3 s)
        got = wait_for(lambda: len(env.hang_pids()) >= 2, 4, 0.05)
        if check(got, "the hanging command is retried", env.calls(t0)):
            pid = env.hang_pids()[-1]
            time.sleep(0.3)
            a = sup.worker("actuate")
            if check(alive(pid) and is_sleep30(pid) and a and (a["pid"] or 0) > 0,
                     "the retried hanging command is running (pid %d)" % pid):
                os.kill(a["pid"], signal.SIGKILL)
                gone = wait_for(lambda: not alive(pid), 2, 0.05)
                check(gone, "kill -9 actuate: the command it was running does not outlive it "
                      "(no orphan)", "pid %d (sleep 30) still alive 2 s later" % pid)
            if alive(pid) and is_sleep30(pid):
                os.kill(pid, signal.SIGKILL)
    finally:
        feeder.stop()
        sup.stop()
        tap.stop()
        server.close()
        for p in env.hang_pids():
            if alive(p) and is_sleep30(p):
                os.kill(p, signal.SIGKILL)
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)


def test_uncertain_switch_and_long_downtime():
    """A switch-on that times out may have switched the device all the same (the request went
    out): when its retry comes and the net no longer calls for on, actuate re-asserts off.
    Then a clean stop longer than stale_after_s: the restart applies the failsafe at once,
    without re-asserting the saved "on" first (no on-off flap)."""
    env = Env()
    server = P1Server()
    relays = (relay_toml("doubt", [env.hang, "doubt", "on"], [env.switch, "doubt", "off"],
                         on_below=-100, on_delay=0, off_delay=0, stale=30, timeout=1) +
              relay_toml("pump", [env.switch, "pump", "on"], [env.switch, "pump", "off"],
                         on_below=-5000, on_delay=0, off_delay=0, stale=3))
    cfg = env.write_config(server.port, relays, watchdog_s=2)
    tap = Tap(cfg, ["relay/", "health/actuate"])
    sup = Supervisor(cfg)
    feeder = Feeder(server, 0.5)
    try:
        if not check(wait_for(sup.all_running, 8, 0.2) is not None, "third supervisor runs",
                     sup.log()[-6:]):
            return
        if not check(warm_up(server, tap, sup), "telegrams reach actuate", sup.log()[-6:]):
            return
        t0 = time.time()
        feeder.value = -2000
        server.send(-2000)
        first = wait_for(lambda: [(t, e) for t, e in tap.events(t0) if e["relay"] == "doubt"],
                         6, 0.05)
        feeder.value = 500  # import now: the rules want the relay off, as it is believed
        if not check(first, "the hanging switch-on is reported", env.calls(t0)):
            return
        t1, e1 = first[0]
        check(not e1["ok"] and not e1["new_state"] and
              re.fullmatch(r"'.*hang\.sh' timed out after 1000 ms \(killed\)", e1["error"]),
              "switch-on timed out after 1 s: ok=false, believed off", e1)
        r = run_cli(["status"] + sup.status_args)
        check(r.returncode == 0 and re.search(r"^doubt +off\? ", r.stdout.decode(), re.M),
              "status shows the state in doubt ('off?')", r.stdout.decode())
        again = wait_for(lambda: [(t, e) for t, e in tap.events(t1 + 0.01)
                                  if e["relay"] == "doubt"], 10, 0.05)
        if check(again, "a second event for the relay follows", summary(tap.events(t0))):
            t2, e2 = again[0]
            check((e2["ok"], e2["old_state"], e2["new_state"], e2["mode"]) ==
                  (True, False, False, "auto") and
                  e2["reason"] == "re-asserting off: the switch on may have happened although "
                                  "it failed (retry 1)",
                  "at the retry actuate re-asserts off (the rules no longer want on)", e2)
            check(4.0 <= t2 - t1 <= 7.5, "the re-assertion comes at the retry time (retry_base_s "
                  "5 s; %.1f s after the failure)" % (t2 - t1))
            offs = [c for c in env.calls(t1) if c[1] == "doubt" and c[2] == "off"]
            check(len(offs) == 1, "the off command ran once", env.calls(t0))
        time.sleep(2.5)
        evs = [e for _, e in tap.events(t0) if e["relay"] == "doubt"]
        check(len(evs) == 2, "then nothing more happens (no flapping)", summary(tap.events(t0)))
        r = run_cli(["status"] + sup.status_args)
        check(r.returncode == 0 and re.search(r"^doubt +off +auto ", r.stdout.decode(), re.M),
              "status: plain 'off' again", r.stdout.decode())

        # --- long downtime: pump on, clean stop, 6 s down (stale_after_s = 3), restart
        t_on = time.time()
        feeder.value = -6000
        on = wait_for(lambda: [c for c in env.calls(t_on) if c[1:] == ("pump", "on")], 5, 0.05)
        feeder.value = None
        if not check(on, "pump switched on (-6000 W)", env.calls(t_on)):
            return
        time.sleep(1)
        rc = sup.stop()
        check(rc == 0, "clean stop (exit %s)" % rc)
        with open(os.path.join(env.path, "state", "actuate.state")) as f:
            saved = f.read()
        check(re.search(r"^relay pump on=1 ", saved, re.M) and
              re.search(r"^saved \d+ clean=1$", saved, re.M),
              "the state file holds pump on and a clean stop's time", saved)
        time.sleep(6)
        t_start = time.time()
        sup = Supervisor(cfg)
        check(wait_for(sup.all_running, 8, 0.2) is not None, "restarted after 6 s", sup.log()[-6:])
        time.sleep(1.5)
        calls = [c[2] for c in env.calls(t_start) if c[1] == "pump"]
        lines = [l for l in sup.log() if re.match(r"^actuate: \w+: relay pump ", l)]
        check(calls == ["off"] and
              any(re.search(r"relay pump off \(failsafe\): no fresh data from meter 'home' "
                            r"for ([7-9]|1\d) s: failsafe off", l) for l in lines) and
              not any("restore" in l for l in lines),
              "after 6 s down: the failsafe switches pump off at once, nothing re-asserts the "
              "saved on first", (calls, lines))
    finally:
        feeder.stop()
        sup.stop()
        tap.stop()
        server.close()
        for p in env.hang_pids():
            if alive(p) and is_sleep30(p):
                os.kill(p, signal.SIGKILL)
        for p in procs_using(cfg):
            os.kill(p, signal.SIGKILL)


def test_config_errors():
    d = tempfile.mkdtemp(prefix="mpe.", dir="/tmp")
    temp_dirs.append(d)
    base = ('[general]\nrun_dir = "%s/run"\n\n[[meter]]\nname = "home"\nsource = "tcp"\n'
            'host = "127.0.0.1"\nport = 2323\n\n' % d)
    cases = [
        ("thresholds", 'on_below_w = 200\noff_above_w = 100\n', "on_below_w = 200",
         r"relay\[0\]\.on_below_w: must be below off_above_w \(100 W\)"),
        ("output type", '[relay.output]\ntype = "relais"\n', 'type = "relais"',
         r"relay\[0\]\.output\.type: \"relais\" is not one of"),
        ("meter", None, 'meter = "nope"', r"relay\[0\]\.meter: no \[\[meter\]\] is named "
         r"\"nope\""),
        ("switch budget", 'max_switches_per_hour = 1\n', "max_switches_per_hour = 1",
         r"relay\[0\]\.max_switches_per_hour: must be 0 \(unlimited\) or at least 2"),
        ("failsafe", 'failsafe = "maybe"\n', 'failsafe = "maybe"',
         r"relay\[0\]\.failsafe: \"maybe\" is not one of"),
    ]
    for what, extra, needle, pat in cases:
        meter = "nope" if what == "meter" else "home"
        body = '[[relay]]\nname = "boiler"\nmeter = "%s"\n' % meter
        if extra and not extra.startswith("[relay.output]"):
            body += extra
        body += (extra if extra and extra.startswith("[relay.output]")
                 else '[relay.output]\ntype = "sim"\n')
        text = base + body
        f = os.path.join(d, "bad_%s.toml" % what.replace(" ", "_"))
        with open(f, "w") as fh:
            fh.write(text)
        line = [i + 1 for i, l in enumerate(text.splitlines()) if l.startswith(needle)][0]
        r = run_cli(["check-config", f])
        err = r.stderr.decode()
        m = re.search(r"^%s:(\d+):(\d+): (.*)$" % re.escape(f), err, re.M)
        check(r.returncode == 2 and m and int(m.group(1)) == line and int(m.group(2)) > 0 and
              re.match(pat, m.group(3)),
              "check-config, bad %s: exit 2, %s:%d:COL: relay[0]... message"
              % (what, os.path.basename(f), line), (r.returncode, err))
    # every error of one file, sorted by line
    text = base + ('[[relay]]\nname = "boiler"\nmeter = "nope"\non_below_w = 200\n'
                   'off_above_w = 100\n[relay.output]\ntype = "relais"\n')
    f = os.path.join(d, "bad_all.toml")
    with open(f, "w") as fh:
        fh.write(text)
    r = run_cli(["check-config", f])
    errs = [l for l in r.stderr.decode().splitlines() if l.startswith(f + ":")]
    keys = [re.match(r"^.*?:\d+:\d+: ([^:]+):", l).group(1) for l in errs]
    check(r.returncode == 2 and keys == ["relay[0].meter", "relay[0].on_below_w",
                                         "relay[0].output.type"],
          "check-config: three relay errors in one file, all reported in line order",
          (r.returncode, r.stderr.decode()))


def main():
    if not os.access(MP, os.X_OK):
        print("FAIL meterpipe not found at %s (set MP_BIN_DIR)" % MP)
        return 1
    ck.run(test_config_errors, test_rules_failsafe_override_restart,
           test_failing_and_hanging_commands, test_uncertain_switch_and_long_downtime, where=False,
           print_tb=True)
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
