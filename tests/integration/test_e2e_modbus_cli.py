#!/usr/bin/python3
"""`meterpipe scan --tcp` and `meterpipe read --tcp` against two pymodbus peers
(tests/integration/modbus_peer.py, Debian python3-pymodbus) on 127.0.0.1 serving register
images whose values this test knows (mptest_modbus.tcp_peers):
  peer A: unit 1 = an Eastron SDM630 (input registers, float32), unit 4 = an inepro PRO380
  peer B: unit 2 = SunSpec common + inverter 103 + meter 203, unit 3 = SunSpec common + meter 203

Checks: scan finds exactly the answering units with their type and voltage, within the time
the timeouts allow; read prints the values and registers of the image as JSON, refuses an
unknown type naming the valid ones, and reports a silent unit as a timeout.

Environment (ctest): MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`;
exit 1 on any failure. Everything started here is ended at the end.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest_modbus import SDM_TCP_VALUES, approx, sdm_mismatches, tcp_peers  # noqa: E402

CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check


def main():
    d = tempfile.mkdtemp(prefix="mpe2e.", dir="/tmp")
    peer_a, peer_b = tcp_peers(d)
    try:
        if not check(peer_a.start() and peer_b.start(), "two pymodbus peers listen on 127.0.0.1"):
            return

        # --- meterpipe scan ---------------------------------------------------------------
        t0 = time.monotonic()
        r = mptest.run_cli(["scan", "--tcp", "127.0.0.1:%d" % peer_a.port, "--ids", "1-5",
                            "--timeout-ms", "300"], timeout=60,
                           text=True)
        secs = time.monotonic() - t0
        rows = {}
        for line in r.stdout.splitlines():
            p = line.split()
            if len(p) == 4 and p[0].isdigit() and p[3] == "V":
                rows[int(p[0])] = (p[1], p[2])
        check(r.returncode == 0 and set(rows) == {1, 4},
              "scan --tcp peer A --ids 1-5 finds exactly units 1 and 4", r.stdout + r.stderr)
        check(rows.get(1, ("",))[0] == "sdm630" and rows.get(1, ("", ""))[1] == "230.5",
              "scan: unit 1 is sdm630 at 230.5 V", rows.get(1))
        check(rows.get(4, ("",))[0] == "pro380" and rows.get(4, ("", ""))[1] == "231.5",
              "scan: unit 4 is pro380 at 231.5 V", rows.get(4))
        check("2 of 5 ids answered" in r.stdout, "scan summary: 2 of 5 ids answered")
        check(secs < 4.0, "scan of 5 ids (3 silent, 300 ms timeout) in %.2f s" % secs, secs)
        r = mptest.run_cli(["scan", "--tcp", "127.0.0.1:%d" % peer_b.port, "--ids", "1-3",
                            "--timeout-ms", "300"], timeout=60,
                           text=True)
        check(r.returncode == 0 and "0 of 3 ids answered" in r.stdout and "SunSpec" in r.stdout,
              "scan of SunSpec-only units lists none and says SunSpec may be missed",
              r.stdout)

        # --- meterpipe read ---------------------------------------------------------------
        r = mptest.run_cli(["read", "--tcp", "127.0.0.1:%d" % peer_a.port, "--id", "1",
                            "--type", "sdm630"], text=True,
                           timeout=30)
        try:
            js = json.loads(r.stdout)
        except ValueError:
            js = None
        if check(r.returncode == 0 and js is not None and js.get("ok") is True,
                 "read --tcp --id 1 --type sdm630 prints JSON, ok true", r.stdout + r.stderr):
            got = {v["name"]: v for v in js["values"]}
            bad = sdm_mismatches(got, SDM_TCP_VALUES, "value", "register")
            check(not bad, "read: every SDM630 value and register equals the image", bad[:3])
            check(got.get("power_net_w", {}).get("value") == -1234.5 and
                  got.get("power_export_w", {}).get("value") == 1234.5 and
                  js.get("unit_id") == 1 and js.get("type") == "sdm630" and js.get("errors") == [],
                  "read: power_net_w -1234.5, export 1234.5, unit_id 1, no errors")
        r = mptest.run_cli(["read", "--tcp", "127.0.0.1:%d" % peer_b.port, "--id", "2",
                            "--type", "sunspec"], text=True,
                           timeout=30)
        try:
            js = json.loads(r.stdout)
            got = {v["name"]: v for v in js["values"]}
        except (ValueError, KeyError):
            js, got = None, {}
        check(r.returncode == 0 and approx(got.get("pv_power_w", {}).get("value"), 3210.0) and
              got.get("manufacturer", {}).get("value") == "meterpipe-test",
              "read --type sunspec --id 2: pv_power_w 3210, manufacturer meterpipe-test",
              r.stdout[:300] + r.stderr)
        r = mptest.run_cli(["read", "--tcp", "127.0.0.1:%d" % peer_a.port, "--id", "1",
                            "--type", "nonsense"], text=True,
                           timeout=30)
        check(r.returncode == 2 and "nonsense" in r.stderr and "sdm630" in r.stderr and
              "sunspec" in r.stderr and "pro380" in r.stderr,
              "read --type nonsense exits 2 naming the valid types", (r.returncode, r.stderr))
        t0 = time.monotonic()
        r = mptest.run_cli(["read", "--tcp", "127.0.0.1:%d" % peer_a.port, "--id", "9",
                            "--type", "sdm630"], text=True,
                           timeout=30)
        try:
            js = json.loads(r.stdout)
        except ValueError:
            js = {}
        check(r.returncode == 1 and js.get("ok") is False and js.get("values") == [] and
              "timeout" in " ".join(js.get("errors", [])),
              "read of a silent unit: exit 1, ok false, error says timeout (%.1f s)"
              % (time.monotonic() - t0), r.stdout + r.stderr)
    finally:
        peer_a.stop()
        peer_b.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(mptest.script_main(CK, main, print_tb=True))
