#!/usr/bin/python3
"""End-to-end test of several relays on one site through the supervisor (issue 5).

A simulated house: a Belgian (e-MUCS) P1 dongle over TCP sends a telegram every STEP seconds
whose net power is the house's base power plus the load of every relay that is on. "On"
means what the outputs did, not what actuate believes: the boiler and the heat pump switch
through `type = "command"` scripts that log their calls, the car charger through
`type = "http"` against a local HTTP server that records the requests. So a relay that
switches on really takes its load_w from the surplus the next telegram shows, as on a real
site, and the test sees whether actuate stages relays by priority without spending one
surplus twice, sheds the lowest priority first on import, and keeps the quarter-hour average
under demand_limit_w (peak shaving on the meter's 1-0:1.4.0 running average).

Environment (set by ctest): MP_BIN_DIR = the build's bin dir. Standard library only.
Prints one line per check and a summary `N passed, M failed`; exits 1 on any failure.
"""
import http.server
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
import mptest_actuate as ea  # noqa: E402  (P1 server, tap, env helpers)
from mptest import wait_for  # noqa: E402

STEP = 0.5  # seconds between telegrams
SETTLE_S = 5  # actuate's settle time (SiteSpec.settle_s)
TOKEN = "s3cr3t-webhook-token"  # sent to the charger; must never show in a log

ck = mptest.Checker(handle_signals=False, max_detail=None)
check = ck.check

LOADS = {"boiler": 1000, "heatpump": 1500, "car": 2000}


def be_telegram(net_w, avg_w):
    """An e-MUCS telegram (shape of tests/data/dsmr/fluvius_v171.txt): net power net_w and
    current quarter-hour average demand avg_w (1-0:1.4.0)."""
    imp = max(net_w, 0) / 1000.0
    exp = max(-net_w, 0) / 1000.0
    lines = [
        "/FLU5\\253769484_A", "",
        "0-0:96.1.4(50217)",
        "0-0:96.1.1(3153414733313031303231363035)",
        "0-0:1.0.0(%s)" % ea.dsmr_time(time.time()),
        "1-0:1.8.1(000000.034*kWh)", "1-0:1.8.2(000015.758*kWh)",
        "1-0:2.8.1(000000.000*kWh)", "1-0:2.8.2(000000.011*kWh)",
        "1-0:1.4.0(%06.3f*kW)" % (avg_w / 1000.0),
        "1-0:1.6.0(200509134558S)(02.589*kW)",
        "0-0:96.14.0(0001)",
        "1-0:1.7.0(%06.3f*kW)" % imp,
        "1-0:2.7.0(%06.3f*kW)" % exp,
        "1-0:32.7.0(234.7*V)", "1-0:52.7.0(234.7*V)", "1-0:72.7.0(234.7*V)",
        "1-0:31.7.0(000.00*A)", "1-0:51.7.0(000.00*A)", "1-0:71.7.0(000.00*A)",
        "0-0:96.3.10(1)", "0-0:17.0.0(999.9*kW)", "1-0:31.4.0(999*A)", "0-0:96.13.0()",
    ]
    body = ("\r\n".join(lines) + "\r\n!").encode()
    return body + b"%04X\r\n" % mptest.crc16(body)


class BeServer(ea.P1Server):
    """The TCP dongle, sending e-MUCS telegrams."""

    def send(self, net_w, avg_w=0):
        return self.write(be_telegram(net_w, avg_w), net_w)


class Charger:
    """Local HTTP server playing the car charger's webhook; records every request."""

    def __init__(self):
        self.requests = []  # (time, method, path, body, headers dict)
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                with outer.lock:
                    outer.requests.append((time.time(), self.command, self.path, body,
                                           dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_PATCH = _any

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def calls(self, since=0.0):
        with self.lock:
            return [r for r in self.requests if r[0] >= since]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class House:
    """Base power plus the relays that are on (as their outputs last switched them)."""

    def __init__(self, server, env, charger):
        self.server, self.env, self.charger = server, env, charger
        self.base = 0
        self.avg = None  # None: the meter's quarter average follows the import
        self.stop_ev = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def on(self):
        state = {}
        for _, relay, what in self.env.calls():
            state[relay] = what == "on"
        for _, method, _, body, _ in self.charger.calls():
            state["car"] = body == "turn=on"
        return sorted(r for r, s in state.items() if s)

    def net(self):
        return self.base + sum(LOADS[r] for r in self.on())

    def _run(self):
        while not self.stop_ev.wait(STEP):
            net = self.net()
            self.server.send(net, max(net, 0) if self.avg is None else self.avg)

    def stop(self):
        self.stop_ev.set()


def relay(name, prio, on_below, off_above, output):
    return ('[[relay]]\nname = "%s"\nmeter = "home"\npriority = %d\nload_w = %d\n'
            'on_below_w = %d\non_delay_s = 2\noff_above_w = %d\noff_delay_s = 2\n'
            'min_on_s = 0\nmin_off_s = 0\nmax_switches_per_hour = 0\nfailsafe = "off"\n'
            'stale_after_s = 10\n[relay.output]\n%s\n'
            % (name, prio, LOADS[name], on_below, off_above, output))


def site_config(env, server, charger, off_above, actuate=""):
    def cmd(name):
        return ('type = "command"\non_command = %s\noff_command = %s\ntimeout_s = 5\n'
                % (json.dumps([env.switch, name, "on"]), json.dumps([env.switch, name, "off"])))
    car = ('type = "http"\nurl = "http://127.0.0.1:%d/api/webhook/car"\non_method = "POST"\n'
           'off_method = "PUT"\non_body = "turn=on"\noff_body = "turn=off"\n'
           'headers = ["Authorization: Bearer %s", "Content-Type: text/plain"]\ntimeout_s = 3\n'
           % (charger.port, TOKEN))
    # hysteresis wider than each load: off_above_w - on_below_w > load_w
    relays = (relay("boiler", 30, -1600, off_above, cmd("boiler")) +
              relay("heatpump", 20, -1600, off_above, cmd("heatpump")) +
              relay("car", 10, -2200, off_above, car))
    return env.write_config(server.port, actuate + relays)


def on_off(evs):
    return [(e["relay"], "on" if e["new_state"] else "off") for _, e in evs]


def quiet(tap, seconds, what):
    t = time.time()
    time.sleep(seconds)
    evs = tap.events(t)
    check(not evs, what, [(r, s, e["reason"]) for (r, s), (_, e) in zip(on_off(evs), evs)])


def start(cfg, server):
    tap = ea.Tap(cfg, ["relay/", "health/actuate"])
    sup = ea.Supervisor(cfg)
    st = wait_for(sup.all_running, 8, 0.2)
    ok = check(st is not None, "supervisor runs acquire, process, actuate, upload",
               sup.log()[-6:])
    ok = ok and check(ea.warm_up(server, tap, sup), "e-MUCS telegrams from the TCP source "
                      "reach actuate", sup.log()[-6:])
    return tap, sup, ok


def teardown(house, tap, sup, server, charger):
    house.stop()
    tap.stop()
    sup.stop()
    server.close()
    charger.close()


def wait_events(tap, since, n, timeout):
    return wait_for(lambda: (lambda e: e if len(e) >= n else None)(tap.events(since)),
                    timeout, 0.05) or tap.events(since)


# ---------------------------------------------------------------------------------------------
def test_priorities_and_load_staging():
    env, server, charger = ea.Env(), BeServer(), Charger()
    cfg = site_config(env, server, charger, off_above=100)
    tap, sup, ok = start(cfg, server)
    house = House(server, env, charger)
    try:
        if not ok:
            return
        t0 = time.time()
        wait_for(lambda: len(env.calls()) >= 2 and charger.calls(), 5)
        check(sorted(c[1:] for c in env.calls()) == [("boiler", "off"), ("heatpump", "off")] and
              [(m, b) for _, m, _, b, _ in charger.calls()] == [("PUT", "turn=off")],
              "start without data: every relay switched off once (failsafe off), the charger "
              "by PUT turn=off", (env.calls(), charger.calls()))

        # A1: 3500 W export. Alone each relay would switch on; boiler (priority 30) goes
        # first, the heat pump then sees 2500 W left and takes 1500 W, the 1000 W left
        # are below the car's 2200 W: it stays off.
        t1 = time.time()
        house.base = -3500
        evs = wait_events(tap, t1, 2, 20)
        check(on_off(evs[:2]) == [("boiler", "on"), ("heatpump", "on")],
              "3500 W export: boiler on first, then the heat pump", on_off(evs))
        if len(evs) >= 2:
            (tb, eb), (th, eh) = evs[0], evs[1]
            check(th - tb >= 2.0,
                  "staging: the heat pump waited its own on_delay_s (2 s) after the boiler "
                  "switched on (%.1f s)" % (th - tb))
            check(re.fullmatch(r"net -3500 W below -1600 W for [2-3] s", eb["reason"]) and
                  re.fullmatch(r"net -2500 W below -1600 W for \d+ s", eh["reason"]),
                  "reasons: the boiler saw the export, the heat pump what the boiler left",
                  (eb["reason"], eh["reason"]))
        quiet(tap, SETTLE_S + 1.5, "1000 W export left: the car (on below -2200 W) does not "
              "switch on the surplus the others already use")
        check(house.on() == ["boiler", "heatpump"], "outputs: boiler and heat pump on",
              house.on())
        r = mptest.run_cli(["status"] + sup.status_args)
        out = r.stdout.decode()
        check(r.returncode == 0 and re.search(r"^boiler +on +auto ", out, re.M) and
              re.search(r"^heatpump +on +auto ", out, re.M) and
              re.search(r"^car +off ", out, re.M),
              "`meterpipe status` lists the three relays with their state", out)

        # A2: more sun (5500 W export, 3000 W left): the car comes on through its webhook.
        t2 = time.time()
        house.base = -5500
        evs = wait_events(tap, t2, 1, 10)
        check(on_off(evs) == [("car", "on")], "3000 W export left: the car switches on",
              on_off(evs))
        if evs:
            check(re.fullmatch(r"net -3000 W below -2200 W for [2-3] s", evs[0][1]["reason"]),
                  "car on: reason in words", evs[0][1]["reason"])
        reqs = charger.calls(t2)
        check([(m, p, b) for _, m, p, b, _ in reqs] == [("POST", "/api/webhook/car", "turn=on")]
              and reqs[0][4].get("Authorization") == "Bearer " + TOKEN,
              "the charger got POST /api/webhook/car turn=on with its bearer token",
              [r[1:4] for r in reqs])
        quiet(tap, 3, "1000 W export with all three on: nothing else switches")

        # A3: a cloud (3000 W export): 1500 W import with all on -> the car, the lowest
        # priority, goes off first; with 500 W export then, the others stay on.
        t3 = time.time()
        house.base = -3000
        evs = wait_events(tap, t3, 1, 10)
        check(on_off(evs) == [("car", "off")], "1500 W import: the lowest priority (car) "
              "goes off first", on_off(evs))
        if evs:
            check(re.fullmatch(r"net 1500 W above 100 W for [2-3] s", evs[0][1]["reason"]),
                  "car off: reason in words", evs[0][1]["reason"])
        check([(m, b) for _, m, _, b, _ in charger.calls(t3)] == [("PUT", "turn=off")],
              "the charger got PUT turn=off (off_method)", [r[1:4] for r in charger.calls(t3)])
        quiet(tap, SETTLE_S + 1.5, "500 W export after the car went off: boiler and heat pump "
              "stay on, the car does not come back")

        # A4: evening (no sun): 2500 W import -> heat pump off, then after the meter shows
        # it (settle time) still 1000 W import -> boiler off.
        t4 = time.time()
        house.base = 0
        evs = wait_events(tap, t4, 2, 20)
        check(on_off(evs[:2]) == [("heatpump", "off"), ("boiler", "off")],
              "evening import: the heat pump goes off, then the boiler", on_off(evs))
        if len(evs) >= 2:
            (th, eh), (tb, eb) = evs[0], evs[1]
            check(tb - th >= SETTLE_S - 0.5,
                  "one relay off per settle time: the boiler waited for a reading that shows "
                  "the heat pump off (%.1f s)" % (tb - th))
            check(re.fullmatch(r"net 2500 W above 100 W for \d s", eh["reason"]) and
                  re.fullmatch(r"net 1000 W above 100 W for \d+ s", eb["reason"]),
                  "reasons: 2500 W then 1000 W import", (eh["reason"], eb["reason"]))
        quiet(tap, 2, "all off: nothing more switches")

        evs = tap.events(t1)
        per = {n: [s for r, s in on_off(evs) if r == n] for n in LOADS}
        check(per == {n: ["on", "off"] for n in LOADS} and all(e["ok"] for _, e in evs),
              "the whole day: each relay switched on once and off once, every switch ok",
              per)
        check(sorted(c[1:] for c in env.calls(t1)) ==
              sorted([("boiler", "on"), ("boiler", "off"), ("heatpump", "on"),
                      ("heatpump", "off")]) and len(charger.calls(t1)) == 2,
              "the outputs ran exactly these switches", (env.calls(t1), charger.calls(t1)))
        logs = "\n".join(sup.log())
        check(TOKEN not in logs, "the webhook token is not in any log line")
    finally:
        teardown(house, tap, sup, server, charger)


def test_peak_shaving():
    env, server, charger = ea.Env(), BeServer(), Charger()
    # off_above_w high: only peak shaving switches the relays off on import here
    cfg = site_config(env, server, charger, off_above=7000,
                      actuate="[actuate]\ndemand_limit_w = 4000\ndemand_margin_w = 100\n\n")
    tap, sup, ok = start(cfg, server)
    house = House(server, env, charger)
    try:
        if not ok:
            return
        # B1: 4000 W export: boiler and heat pump on (1500 W left: the car stays off)
        t1 = time.time()
        house.base = -4000
        evs = wait_events(tap, t1, 2, 20)
        if not check(on_off(evs[:2]) == [("boiler", "on"), ("heatpump", "on")],
                     "4000 W export: boiler and heat pump on", on_off(evs)):
            return
        time.sleep(1.5)
        # The shed relay stays off for the rest of the quarter-hour: B2 and B3 must fit in
        # one quarter (quarters are xx:00/15/30/45 on the system clock).
        left = 900 - time.time() % 900
        if left < 40:
            time.sleep(left + 1)

        # B2: import 4500 W while the quarter so far averaged 3900 W (= limit - margin): the
        # quarter would end above the budget -> shed the lowest priority that is on (the heat
        # pump, 1500 W); 3000 W import then keeps the average under it, the boiler stays.
        t2 = time.time()
        house.avg = 3900
        house.base = 2000
        evs = wait_events(tap, t2, 1, 6)
        check(on_off(evs) == [("heatpump", "off")],
              "quarter average heading above 3900 W: the heat pump is shed at once", on_off(evs))
        if evs:
            t, e = evs[0]
            check(t - t2 <= 2 * STEP + 1.0, "shed on the first telegram that shows the "
                  "import (%.1f s), no off_delay_s" % (t - t2))
            m = re.fullmatch(r"peak shaving: quarter-hour average projected (\d+) W above "
                             r"3900 W \(limit 4000 W - margin 100 W\)", e["reason"])
            check(m and 3900 < int(m.group(1)) <= 4500, "shed event: reason with the "
                  "projection, the budget and the limit", e["reason"])
        quiet(tap, SETTLE_S + 1, "3000 W import: the boiler (higher priority) stays on; the "
              "surplus rule (off above 7000 W) switches nothing")
        check(house.on() == ["boiler"], "outputs: only the boiler on", house.on())

        # B3: export again (4000 W left with the boiler on). The heat pump was shed in this
        # quarter and stays off; the car, not shed, may use the surplus.
        t3 = time.time()
        house.base = -5000
        evs = wait_events(tap, t3, 1, 10)
        check(on_off(evs) == [("car", "on")], "export after the shed: the car switches on, "
              "the shed heat pump does not", on_off(evs))
        quiet(tap, 3, "the heat pump stays off for the rest of the quarter")
        check(time.time() // 900 == t2 // 900, "(B2 and B3 happened in one quarter-hour)")
        w = sup.worker("actuate")
        check(w and 0 < w["gauges"].get("projected_demand_w", -1) < 3900,
              "status: the projected quarter average is a gauge, under the budget now",
              w and w["gauges"])
    finally:
        teardown(house, tap, sup, server, charger)


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_priorities_and_load_staging, test_peak_shaving,
                                where=False, print_tb=True))
