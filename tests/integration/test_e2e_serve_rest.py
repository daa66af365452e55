#!/usr/bin/python3
"""serve's REST API and /metrics (issue 8) equal the readings on the bus (`meterpipe tap`), per
meter and per worker; promtool accepts /metrics; bad requests (unknown paths and meters, bad
queries, huge headers and URIs, garbage, a key-less WebSocket upgrade) get 4xx and the worker
survives them. The pipeline is mptest_serve.Serve; MP_BIN_DIR, MP_SOURCE_DIR from ctest.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import alive, worker_pid  # noqa: E402
import mptest_serve  # noqa: E402
from mptest_serve import close_enough, parse_metrics, tap_net, tap_values  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=800)
check = ck.check


def test_rest_and_metrics(s):
    cfg = s.cfg
    h, tap, serve_pid = s.h, s.tap, s.serve_pid
    # --- REST equals the bus
    st, last = h.json("/api/last/home")
    m = tap.by_seq(last["seq"]) if last else None
    if check(m is not None, "the REST reading's seq is on the bus (tap)", last and last["seq"]):
        tv = tap_values(m)
        diff = {k: (tv.get(k), v) for k, v in last["values"].items()
                if k not in tv or not close_enough(tv[k], v)}
        check(not diff and set(tv) == set(last["values"]),
              "/api/last/home values equal the tap reading (%d values)" % len(tv), diff)
        check(str(last["receive_time_ns"]) == m["envelope"]["reading"]["receive_time_ns"],
              "receive time equals the bus", (last["receive_time_ns"], m["envelope"]))
        check(close_enough(last["net_w"], tap_net(m)), "net_w equals the bus",
              (last["net_w"], tap_net(m)))
    st, alllast = h.json("/api/last")
    check(st == 200 and "home" in alllast and alllast["home"]["meter"] == "home",
          "/api/last lists the meter", alllast)
    st, avg = h.json("/api/minuteavg/home")
    check(st == 200 and avg["samples"] >= 10 and "power_import_w" in avg["values"],
          "/api/minuteavg/home averages the last minute", avg)
    st, hist = h.json("/api/history/home?minutes=60")
    check(st == 200 and hist["resolution_s"] == 1 and len(hist["points"]) >= 2,
          "/api/history/home?minutes=60: 1-second points", hist)
    st, hist = h.json("/api/history/home?minutes=1440")
    check(st == 200 and hist["resolution_s"] == 60 and len(hist["points"]) >= 1,
          "/api/history/home?minutes=1440: minute averages", hist)
    def status_ok():
        st, status = h.json("/api/status")
        ok = (st == 200 and status["serve"]["uptime_s"] > 0 and
              all(status["workers"].get(w, {}).get("up") for w in
                  ("acquire", "process", "actuate", "serve")) and
              status["meters"]["home"]["workers"]["process"]["counters"]["readings"] > 0)
        return ok, status
    # process's counters reach serve in its heartbeat (within 10 s of a change)
    mptest.wait_for(lambda: status_ok()[0], 15, 0.2)
    ok, status = status_ok()
    check(ok, "/api/status: uptime, every worker up, per-meter counters", status)

    # the rate leaves out the current second: readings of an earlier one, waited for
    def rate_of():
        _, s = h.json("/api/status")
        return s["meters"]["home"]["reading_rate_per_s"] if s else 0
    mptest.wait_for(lambda: rate_of() > 0, 15, 0.2)
    st, status = h.json("/api/status")
    rate = status["meters"]["home"]["reading_rate_per_s"] if status else 0
    check(rate > 0, "/api/status: reading rate per meter (%.1f/s)" % rate, status)

    # --- /metrics equals the bus and passes promtool
    st, ct, body = h.get("/metrics")
    text = body.decode()
    check(st == 200 and ct.startswith("text/plain"), "/metrics answers text/plain", (st, ct))
    promtool = shutil.which("promtool")
    if check(promtool is not None, "promtool installed"):
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=20)
        check(r.returncode == 0, "promtool check metrics exits 0",
              r.stderr.decode(errors="replace") + r.stdout.decode(errors="replace"))
    mt = parse_metrics(text)
    t_s = mt.get('meterpipe_reading_time_seconds{meter="home"}')
    match = None
    for _, tm in tap.readings():
        if t_s is not None and abs(int(tm["envelope"]["reading"]["receive_time_ns"]) / 1e9 - t_s) < 1e-6:
            match = tm
    if check(match is not None, "the /metrics reading is on the bus", t_s):
        tv = tap_values(match)
        pairs = [("power_import_w", "meterpipe_power_import_watts"),
                 ("power_export_w", "meterpipe_power_export_watts"),
                 ("power_net_w", "meterpipe_power_net_watts"),
                 ("voltage_l1_v", "meterpipe_voltage_l1_volts"),
                 ("current_l2_a", "meterpipe_current_l2_amperes"),
                 ("energy_import_kwh", "meterpipe_energy_import_kwh_total"),
                 ("energy_export_t1_kwh", "meterpipe_energy_export_t1_kwh_total"),
                 ("gas_m3", "meterpipe_gas_m3_total")]
        bad = {}
        for vn, mn in pairs:
            key = mn + '{meter="home"}'
            if vn not in tv or key not in mt or not close_enough(tv[vn], mt[key]):
                bad[mn] = (tv.get(vn), mt.get(key))
        check(not bad, "/metrics values equal the bus reading (%d metrics)" % len(pairs), bad)
    check("# TYPE meterpipe_energy_import_kwh_total counter" in text and
          "# TYPE meterpipe_power_import_watts gauge" in text,
          "energy is a counter, power a gauge")
    check(any(k.startswith("meterpipe_worker_frames_total{") and 'worker="acquire"' in k
              for k in mt), "worker health counters as meterpipe_worker_<counter>_total")
    check(mt.get('meterpipe_worker_up{worker="process"}') == 1, "meterpipe_worker_up")

    # --- bad requests: 4xx, never a crash
    st, ct, body = h.get("/nope")
    check(st == 404 and "json" in ct, "unknown path: 404 JSON", (st, body))
    st, ct, body = h.get("/api/last/nope")
    check(st == 404 and json.loads(body).get("meter") == "nope",
          "unknown meter: 404 naming it", body)
    for q in ("minutes=abc", "minutes=0", "minutes=100000", "minutes=%zz", "minutes=-1"):
        st, ct, body = h.get("/api/history/home?" + q)
        try:
            param = json.loads(body).get("parameter")
        except ValueError:
            param = None
        check(st == 400 and param in ("minutes", "query"), "bad query %s: 400 naming %s" %
              (q, param), (st, body))
    st, ct, body = h.get("/api/history/home?series=nope")
    check(st == 400 and json.loads(body).get("parameter") == "series", "bad series: 400")
    st, ct, body = h.get("/api/last", method="POST")
    check(st == 405, "POST: 405", st)
    st, ct, body = h.get("/ws")
    check(st == 426, "plain GET /ws: 426", st)
    ans = h.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
    check(re.match(rb"HTTP/1\.[01] 4\d\d", ans) or ans == b"",
          "huge header: 4xx (or closed)", ans[:60])
    ans = h.raw(b"GET /" + b"x" * 50000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(re.match(rb"HTTP/1\.[01] 4\d\d", ans) or ans == b"", "huge URI: 4xx (or closed)",
          ans[:60])
    ans = h.raw(b"\x00\xff garbage\r\n\r\n")
    check(re.match(rb"HTTP/1\.[01] 4\d\d", ans) or ans == b"", "garbage request: 4xx",
          ans[:60])
    ans = h.raw(b"GET /api/last/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n")
    check(re.match(rb"HTTP/1\.[01] 4\d\d", ans), "bad %-escape in path: 4xx", ans[:60])
    bad_ws = h.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    # civetweb 1.15 answers this one with a bare "Error 400: Bad Request" body
    check(re.match(rb"(HTTP/1\.[01] |Error )4\d\d", bad_ws) or bad_ws == b"",
          "WebSocket upgrade without a key: 4xx", bad_ws[:60])
    time.sleep(0.5)
    check(worker_pid(cfg, "serve") == serve_pid and alive(serve_pid),
          "serve survived every bad request (same pid)")
    st, ct, body = h.get("/api/status")
    check(st == 200, "and still answers")


if __name__ == "__main__":
    sys.exit(mptest_serve.main(ck, test_rest_and_metrics))
