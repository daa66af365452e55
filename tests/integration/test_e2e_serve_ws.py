#!/usr/bin/python3
"""serve's WebSocket (issue 8): a client gets every reading, in order, within 100 ms of its
publication; a client that never reads is disconnected while the other keeps receiving; a
relay switch reaches WebSocket and /api/relays with the reason on the bus; serve's own memory
(RssAnon) stays under 2 MiB. The pipeline is mptest_serve.Serve; MP_BIN_DIR from ctest.
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
import mptest_serve  # noqa: E402
from mptest_serve import RATE_HZ, close_enough, parse_metrics, tap_values  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=800)
check = ck.check


def test_websocket(s):
    cfg = s.cfg
    h, tap, serve_pid = s.h, s.tap, s.serve_pid
    # --- WebSocket: every reading within 100 ms; a stuck client is dropped
    a = s.ws()
    check(a.status_line.startswith("HTTP/1.1 101"), "WebSocket handshake", a.status_line)
    msgs = a.messages(2.0)
    rd = [x for x in msgs if x[0].get("type") == "reading"]
    check(len(rd) >= RATE_HZ, "WebSocket client receives readings (%d in 2 s)" % len(rd))
    lat = [(x[1] - int(x[0]["reading"]["send_time_ns"])) / 1e6 for x in rd]
    mono = [(x[2] - int(x[0]["reading"]["receive_mono_ns"])) / 1e6 for x in rd]
    if lat:
        check(max(lat) < 100, "every reading within 100 ms of its publication "
              "(max %.1f ms, mean %.1f ms; from the meter's last byte max %.1f ms)" %
              (max(lat), sum(lat) / len(lat), max(mono)), lat)
    seqs = [x[0]["reading"]["seq"] for x in rd]
    check(seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False,
          "WebSocket readings arrive in order without gaps", seqs)
    tap_arr = {tm["seq"]: t for t, tm in tap.readings()}
    d = [abs(x[1] - tap_arr[x[0]["reading"]["seq"]]) / 1e6 for x in rd
         if x[0]["reading"]["seq"] in tap_arr]
    check(d and max(d) < 100, "WebSocket and tap see each reading within 100 ms of each "
          "other (max %.1f ms)" % (max(d) if d else -1), d)
    ok = True
    for x in rd[:5]:
        tm = tap.by_seq(x[0]["reading"]["seq"])
        tv = tap_values(tm) if tm else {}
        ok = ok and tm is not None and all(close_enough(tv.get(k), v)
                                           for k, v in x[0]["reading"]["values"].items())
    check(ok, "WebSocket reading values equal the bus")

    b = s.ws(rcvbuf=4096)  # never reads
    check(b.status_line.startswith("HTTP/1.1 101"), "second (stuck) client connected")
    t0 = time.monotonic()
    got_a = []

    def dropped():
        got_a.extend(a.messages(0.5))
        st, s = h.json("/api/status")
        return s if s and s["serve"]["websocket_dropped"] >= 1 else None

    s = wait_for(dropped, 40, 0)
    dt = time.monotonic() - t0
    check(s is not None, "a client that never reads is disconnected (after %.1f s)" % dt,
          s and s["serve"])
    # the stuck client's socket ends: drain it and expect EOF/reset
    ended = False
    end = time.monotonic() + 5
    b.sock.settimeout(1)
    while time.monotonic() < end:
        try:
            if not b.sock.recv(1 << 20):
                ended = True
                break
        except socket.timeout:
            continue
        except OSError:
            ended = True
            break
    check(ended, "the stuck client's connection is closed by serve")
    got_a.extend(a.messages(1.0))
    ra = [x[0]["reading"]["seq"] for x in got_a if x[0].get("type") == "reading"]
    check(len(ra) >= RATE_HZ * dt * 0.8 and ra == list(range(ra[0], ra[0] + len(ra))),
          "the other client kept receiving every reading meanwhile (%d)" % len(ra),
          ra[:5])
    st, s = h.json("/api/status")
    check(s and s["serve"]["websocket_clients"] == 1, "one WebSocket client left",
          s and s["serve"])


    # --- relay event: REST and WebSocket show the switch and its reason
    r = mptest.run_cli(["relay", "boiler", "off", "--for", "10m", "-c", cfg], timeout=10)
    check(r.returncode == 0, "meterpipe relay boiler off", r.stderr)
    ev = None
    end = time.monotonic() + 5
    while ev is None and time.monotonic() < end:
        for x in a.messages(0.5):
            if x[0].get("type") == "relay" and x[0]["relay"] == "boiler" and not x[0]["on"]:
                ev = x[0]
    if check(ev is not None, "WebSocket pushes the relay event"):
        trel = [tm for _, tm in tap.relays() if not tm["envelope"]["relay"].get("new_state")]
        reason = trel[-1]["envelope"]["relay"].get("reason") if trel else None
        check(ev["event"]["reason"] == reason and reason,
              "relay event reason equals the bus (%r)" % reason, ev)
        st, rel = h.json("/api/relays")
        b0 = [x for x in rel["relays"] if x["name"] == "boiler"] if rel else []
        check(b0 and b0[0]["on"] is False and b0[0]["last_event"]["reason"] == reason and
              b0[0]["last_event"]["mode"] == "manual",
              "/api/relays: boiler off, with the reason of its last switch", rel)
        st, ct, body = h.get("/metrics")
        check(parse_metrics(body.decode()).get('meterpipe_relay_on{relay="boiler"}') == 0,
              "meterpipe_relay_on{relay=\"boiler\"} 0")

    # --- memory. VmRSS counts ~8.4 MiB of shared libraries that every worker maps
    # (protobuf, libstdc++, libc, and libzmq with what Debian links it to: Kerberos, NORM,
    # PGM, libsodium), and how much of them is resident varies by a few hundred KiB with
    # the kernel's fault-around. What serve itself holds (heap, history rings, thread
    # stacks, buffers: RssAnon) has a budget; VmRSS is reported.
    with open("/proc/%d/status" % serve_pid) as f:
        status = f.read()
    rss, anon, rfile = (int(re.search(r"%s:\s+(\d+) kB" % k, status).group(1))
                        for k in ("VmRSS", "RssAnon", "RssFile"))
    if os.environ.get("MP_SANITIZE") == "1":
        # AddressSanitizer's shadow memory makes RSS meaningless: the figure is checked
        # in the normal build; say so instead of passing or failing here
        print("note serve VmRSS %d KiB under AddressSanitizer: the memory check runs in "
              "the normal build only" % rss, flush=True)
    else:
        print("note serve VmRSS %d KiB = RssAnon %d KiB (its own) + RssFile %d KiB (code "
              "and shared libraries)" % (rss, anon, rfile), flush=True)
        check(anon < 2 * 1024, "serve's own memory (RssAnon) %d KiB < 2 MiB (one meter, "
              "%d Hz, 1 WebSocket client)" % (anon, RATE_HZ), anon)


if __name__ == "__main__":
    sys.exit(mptest_serve.main(ck, test_websocket))
