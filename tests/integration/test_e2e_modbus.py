#!/usr/bin/python3
"""End-to-end Modbus TCP through `meterpipe run` (acquire -> process -> reading/<meter>).

Two independent pymodbus peers (tests/integration/modbus_peer.py, Debian python3-pymodbus) on
127.0.0.1 serve register images whose values this test knows:
  peer A: unit 1 = an Eastron SDM630 (input registers, float32), unit 4 = an inepro PRO380
  peer B: unit 2 = SunSpec common + inverter 103 + meter 203, unit 3 = SunSpec common + meter 203
The config polls unit 1 (modbus, sdm630), unit 2 and unit 3 (sunspec) every 500 ms.

Checks: `meterpipe tap reading/` shows readings equal to the images (canonical names, units and
native ids such as ir:0x0000 / sunspec:103.W@40084); peer A killed -> acquire's health shows
state_grid unavailable and errors_grid growing while peer B's meters keep being read; peer A
back -> state ok, readings resume, acquire neither restarted nor replaced; a hung process is
replaced and what acquire published meanwhile still becomes readings. `meterpipe scan` and
`meterpipe read` against the same peers: test_e2e_modbus_cli.py.

Environment (ctest): MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`;
exit 1 on any failure. Everything started here is ended at the end.
"""
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import (Pipeline, ReadingTap, acquire_health, note, number,  # noqa: E402
                    status_json, values_of, wait_for, worker_of)
from mptest_modbus import SDM630, SDM_TCP_VALUES, approx, sdm_mismatches, tcp_peers  # noqa: E402

CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check


def main():
    d = tempfile.mkdtemp(prefix="mpe2e.", dir="/tmp")
    p = None
    peer_a, peer_b = tcp_peers(d)
    try:
        if not check(peer_a.start() and peer_b.start(), "two pymodbus peers listen on 127.0.0.1"):
            return
        body = ('[upload]\nenabled = false\n\n'
                '[[meter]]\nname = "grid"\nprotocol = "modbus"\nsource = "tcp"\n'
                'host = "127.0.0.1"\nport = %d\nunit_id = 1\ntype = "sdm630"\n'
                'interval_ms = 500\ntimeout_ms = 300\n\n' % peer_a.port)
        body += ('[[meter]]\nname = "pv"\nprotocol = "sunspec"\nsource = "tcp"\n'
                 'host = "127.0.0.1"\nport = %d\nunit_id = 2\ninterval_ms = 500\n'
                 'sunspec_part = "inverter"\n\n' % peer_b.port)
        # the meter behind the same inverter (unit 2), read as its own meter, mounted
        # the other way round (invert_power)
        body += ('[[meter]]\nname = "pvgrid"\nprotocol = "sunspec"\nsource = "tcp"\n'
                 'host = "127.0.0.1"\nport = %d\nunit_id = 2\ninterval_ms = 500\n'
                 'sunspec_part = "meter"\ninvert_power = true\n\n' % peer_b.port)
        body += ('[[meter]]\nname = "pvmeter"\nprotocol = "sunspec"\nsource = "tcp"\n'
                 'host = "127.0.0.1"\nport = %d\nunit_id = 3\ninterval_ms = 500\n'
                 % peer_b.port)
        # relays on a Modbus meter (a poll of 5 requests) and a SunSpec meter: actuate
        # decodes their raw frames itself (both export: on at the first reading)
        for rname, meter in (("export_grid", "grid"), ("export_pv", "pvmeter")):
            body += ('\n[[relay]]\nname = "%s"\nmeter = "%s"\non_below_w = -1000\n'
                     'off_above_w = 100\non_delay_s = 0\noff_delay_s = 0\n'
                     '[relay.output]\ntype = "sim"\n' % (rname, meter))
        p = Pipeline(body, prefix="mpe2e.")
        run_dir = p.run_dir
        r = mptest.run_cli(["check-config", p.cfg])
        check(r.returncode == 0, "check-config accepts modbus + sunspec meters",
              r.stderr.decode().strip())

        # subscribes first (ZeroMQ connects when the endpoints appear, with its reconnect
        # backoff): --backlog prints the readings process published before, seq 1 on
        tap = ReadingTap(run_dir, extra_args=["--backlog", "100"])
        time.sleep(0.3)
        p.start()
        wait_for(lambda: os.path.exists(os.path.join(run_dir, "process.pub")), 10)

        # --- readings equal to the images --------------------------------------------------
        t_start = time.monotonic()
        grid = wait_for(lambda: tap.last("reading/grid"), 15)
        if check(grid is not None, "reading/grid arrives"):
            note("first reading/grid %.2f s after the tap started" % (time.monotonic() - t_start))
            vs = values_of(grid)
            check(grid.get("protocol") == "modbus", "reading/grid protocol is modbus",
                  grid.get("protocol"))
            bad = sdm_mismatches(vs, SDM_TCP_VALUES, "number", "native_id")
            check(not bad, "reading/grid: all %d SDM630 registers equal the image, native ids "
                  "ir:0x...." % len(SDM630), bad[:3])
            check(number(grid, "voltage_l1_v") == 230.5 and
                  vs["voltage_l1_v"].get("unit") == "V" and
                  vs["voltage_l1_v"].get("native_id") == "ir:0x0000",
                  "voltage_l1_v = 230.5 V from ir:0x0000", vs.get("voltage_l1_v"))
            check(number(grid, "power_net_w") == -1234.5 and number(grid, "power_export_w") ==
                  1234.5 and number(grid, "power_import_w") == 0.0,
                  "power_net_w = -1234.5 W, export 1234.5 W, import 0 W",
                  (number(grid, "power_net_w"), number(grid, "power_export_w"),
                   number(grid, "power_import_w")))
            check(number(grid, "energy_import_kwh") == 12345.25 and
                  vs["energy_import_kwh"].get("unit") == "kWh",
                  "energy_import_kwh = 12345.25 kWh", vs.get("energy_import_kwh"))
            check(number(grid, "frequency_hz") == 50.0, "frequency_hz = 50.0 Hz",
                  number(grid, "frequency_hz"))
            names = [v["name"] for v in grid.get("values", [])]
            check(len(names) == len(set(names)), "reading/grid: each name once",
                  sorted(n for n in set(names) if names.count(n) > 1))

        pv = wait_for(lambda: tap.last("reading/pv"), 10)
        if check(pv is not None, "reading/pv (SunSpec inverter 103) arrives"):
            vs = values_of(pv)
            check(pv.get("protocol") == "sunspec", "reading/pv protocol is sunspec",
                  pv.get("protocol"))
            check(approx(number(pv, "pv_power_w"), 3210.0) and
                  vs["pv_power_w"].get("native_id") == "sunspec:103.W@40084",
                  "pv_power_w = 3210 W (321 x 10^1) from sunspec:103.W@40084",
                  vs.get("pv_power_w"))
            check(approx(number(pv, "voltage_l1_v"), 230.1) and
                  approx(number(pv, "frequency_hz"), 50.02) and
                  approx(number(pv, "pv_energy_kwh"), 100.0) and
                  approx(number(pv, "current_a"), 12.34) and
                  approx(number(pv, "temperature_c"), 40.0),
                  "inverter V 230.1, Hz 50.02, 100 kWh, 12.34 A, 40.0 C",
                  [number(pv, n) for n in ("voltage_l1_v", "frequency_hz", "pv_energy_kwh",
                                           "current_a", "temperature_c")])
            check("power_net_w" not in vs and "dc_power_w" not in vs,
                  "not-implemented points (0x8000 / no meter) are absent, not zero")
            firsts = [r for r in tap.readings("reading/pv") if r["_seq"] == 1]
            if firsts:
                # The common model is read once, on the first poll after discovery: its values
                # are in reading seq 1 only. Missing here = process lost acquire's first raw
                # frames (see the frames published/received check below).
                mv = values_of(firsts[0]).get("manufacturer")
                check(mv is not None and mv.get("text") == "meterpipe-test",
                      "first reading/pv (seq 1) carries the common model (manufacturer)", mv)
                later = wait_for(lambda: [r for r in tap.readings("reading/pv") if r["_seq"] > 1],
                                 3)
                check(later and "manufacturer" not in values_of(later[-1]),
                      "later reading/pv: inverter model only (common model read once)")
            else:
                note("reading/pv seq 1 was published before the tap joined: common model "
                     "check skipped (seq seen from %s)" % tap.readings("reading/pv")[0]["_seq"])

        pm = wait_for(lambda: tap.last("reading/pvmeter"), 10)
        if check(pm is not None, "reading/pvmeter (SunSpec meter 203) arrives"):
            vs = values_of(pm)
            check(approx(number(pm, "power_net_w"), -2500.0) and
                  approx(number(pm, "power_export_w"), 2500.0) and
                  approx(number(pm, "power_import_w"), 0.0) and
                  vs["power_net_w"].get("native_id") == "sunspec:203.W@40088",
                  "meter 203: power_net_w -2500 W (export 2500) from sunspec:203.W@40088",
                  vs.get("power_net_w"))
            check(approx(number(pm, "energy_import_kwh"), 7.0) and
                  approx(number(pm, "energy_export_kwh"), 5.0) and
                  approx(number(pm, "voltage_l1_v"), 230.2) and
                  approx(number(pm, "frequency_hz"), 49.98),
                  "meter 203: import 7 kWh, export 5 kWh, 230.2 V, 49.98 Hz",
                  [number(pm, n) for n in ("energy_import_kwh", "energy_export_kwh",
                                           "voltage_l1_v", "frequency_hz")])
            check("pv_power_w" not in vs, "meter 203 reading has no inverter values")

        pg = wait_for(lambda: tap.last("reading/pvgrid"), 10)
        if check(pg is not None, "reading/pvgrid (unit 2, sunspec_part = \"meter\") arrives"):
            vs = values_of(pg)
            check(approx(number(pg, "power_net_w"), 2500.0) and
                  vs["power_net_w"].get("native_id") == "sunspec:203.W@40140" and
                  approx(number(pg, "energy_import_kwh"), 7.0) and "pv_power_w" not in vs,
                  "unit 2's meter model 203 (after the inverter model), invert_power: "
                  "power_net_w +2500 W, import 7 kWh, no inverter values",
                  (vs.get("power_net_w"), number(pg, "energy_import_kwh")))

        act = wait_for(lambda: (lambda w: w if w and w["gauges"].get("relay_export_grid") == 1
                                and w["gauges"].get("relay_export_pv") == 1 else None)(
            worker_of(status_json(run_dir), "actuate")), 20, 0.2)
        check(act is not None, "actuate: both relays on (export 1234.5 W on the SDM630, 2500 W "
              "on the SunSpec meter), from the raw frames it decodes itself",
              (worker_of(status_json(run_dir), "actuate") or {}).get("gauges"))
        if act:
            c = act.get("counters", {})
            check(int(c.get("readings", 0)) > 0 and int(c.get("decode_errors", 0)) == 0,
                  "actuate: readings counted, no decode errors", c)

        # polling rate: interval 500 ms -> about 2 readings/s per meter. Measured on the
        # readings' receive times (acquire's clock at each poll's reply), over 6 readings: a
        # loaded machine delays their way to the tap, not the poll schedule.
        t0 = time.monotonic()
        rate = wait_for(lambda: (lambda rs: rs if len(rs) >= 6 else None)(
            tap.readings("reading/grid", t0)), 20, 0.1) or tap.readings("reading/grid", t0)
        rts = [int(r.get("receive_time_ns", 0)) / 1e9 for r in rate[:6]]
        gap = (rts[-1] - rts[0]) / (len(rts) - 1) if len(rts) >= 2 else 0.0
        check(len(rts) == 6 and 0.4 <= gap <= 2 / 3,
              "reading/grid about every 500 ms (%.3f s apart on average over %d readings)"
              % (gap, len(rts)), rts)

        h = wait_for(lambda: (lambda w: w if w and w.get("info", {}).get("state_grid") == "ok"
                              else None)(acquire_health(run_dir)), 15)
        check(h is not None, "acquire health: state_grid ok, state_pv ok, state_pvmeter ok",
              h and h.get("info"))
        if h:
            check(h["info"].get("state_pv") == "ok" and h["info"].get("state_pvmeter") == "ok",
                  "acquire health: sunspec meters ok", h["info"])
            check(h["counters"].get("errors_grid") == 0 and h["counters"].get("requests_grid", 0) > 0,
                  "errors_grid = 0 while the peer answers", h["counters"])
        acq_pid = h["pid"] if h else None

        # --- peer A goes away -------------------------------------------------------------
        t_kill = time.monotonic()
        peer_a.stop()
        down = wait_for(lambda: (lambda w: w if w and w.get("info", {}).get("state_grid") ==
                                 "unavailable" else None)(acquire_health(run_dir)), 15, 0.2)
        t_down = time.monotonic() - t_kill
        if check(down is not None, "peer A killed: state_grid becomes unavailable"):
            note("state_grid unavailable %.2f s after the kill (3 failed polls, 500 ms apart, "
                 "+ health period)" % t_down)
            check(down["counters"].get("errors_grid", 0) >= 3, "errors_grid counts the failures",
                  down["counters"].get("errors_grid"))
            check(down["info"].get("state_pv") == "ok", "peer B's meters stay ok",
                  down["info"].get("state_pv"))
        time.sleep(1.0)
        t_quiet = time.monotonic()
        time.sleep(1.5)  # the window in which no reading/grid may come (at least 1.5 s)
        wait_for(lambda: len(tap.readings("reading/pv", t_quiet)) >= 2 and
                 len(tap.readings("reading/pvmeter", t_quiet)) >= 2, 15, 0.1)
        check(not tap.readings("reading/grid", t_quiet + 0.3),
              "no reading/grid while peer A is down")
        check(len(tap.readings("reading/pv", t_quiet)) >= 2 and
              len(tap.readings("reading/pvmeter", t_quiet)) >= 2,
              "reading/pv and reading/pvmeter keep flowing meanwhile",
              (len(tap.readings("reading/pv", t_quiet)), len(tap.readings("reading/pvmeter", t_quiet))))
        e1 = (acquire_health(run_dir) or {}).get("counters", {}).get("errors_grid", 0)

        # --- peer A returns ---------------------------------------------------------------
        t_back = time.monotonic()
        check(peer_a.start(), "peer A restarted on the same port")
        back = wait_for(lambda: tap.last("reading/grid", t_back), 30, 0.1)
        if check(back is not None, "reading/grid resumes after peer A returns"):
            note("first reading/grid %.2f s after peer A listened again (device backoff "
                 "1 s doubling, bus reconnect 0.5 s doubling)" % (time.monotonic() - t_back))
            check(number(back, "voltage_l1_v") == 230.5 and number(back, "power_net_w") == -1234.5
                  and number(back, "energy_import_kwh") == 12345.25,
                  "resumed reading/grid equals the image")
        ok = wait_for(lambda: (lambda w: w if w and w.get("info", {}).get("state_grid") == "ok"
                               else None)(acquire_health(run_dir)), 20, 0.2)
        if check(ok is not None, "state_grid ok again"):
            check(ok["counters"].get("errors_grid", 0) >= e1, "errors_grid kept (counter, not reset)",
                  (e1, ok["counters"].get("errors_grid")))
            check(ok["pid"] == acq_pid and ok.get("restarts") == 0,
                  "acquire was not restarted (same pid, restarts 0)",
                  (acq_pid, ok["pid"], ok.get("restarts")))
        t1 = time.monotonic()
        wait_for(lambda: len(tap.readings("reading/grid", t1)) >= 2, 15, 0.1)
        check(len(tap.readings("reading/grid", t1)) >= 2, "reading/grid flows again at ~2/s",
              len(tap.readings("reading/grid", t1)))
        # Every raw frame acquire published reached process, or is counted as lost: stop peer
        # B so that the pv/pvmeter counters settle, then compare the two workers' counters.
        peer_b.stop()

        # the counters travel in heartbeats (within 10 s of a change, later on a loaded
        # machine): wait until they balance, with a generous deadline
        def balanced():
            s = status_json(run_dir)
            a, r = worker_of(s, "acquire"), worker_of(s, "process")
            if not a or not r:
                return None
            lost = r["counters"].get("bus_lost", 0)
            return s if all(a["counters"].get("frames_" + m, 0) ==
                            r["counters"].get("frames_" + m, 0) + lost
                            for m in ("pv", "pvmeter")) else None
        st = wait_for(balanced, 30, 0.2) or status_json(run_dir)
        acq, prc = worker_of(st, "acquire"), worker_of(st, "process")
        if check(acq is not None and prc is not None, "status lists acquire and process"):
            for m in ("pv", "pvmeter"):
                pub = acq["counters"].get("frames_" + m, 0)
                got = prc["counters"].get("frames_" + m, 0)
                lost = prc["counters"].get("bus_lost", 0)
                check(pub == got + lost,
                      "raw/%s: frames published by acquire (%d) = received by process (%d) "
                      "+ bus_lost (%d)" % (m, pub, got, lost),
                      "frames published before process's subscription took effect are neither "
                      "replayed nor counted (bus/bus.cpp Subscriber::handle, first contact)")
        # process hangs and is replaced (as the watchdog would do): what acquire published
        # meanwhile must still become readings (process/main.cpp: "a restarted process
        # fetches the frames it missed from acquire"). raw/grid polls are matched with
        # reading/grid by receive_time_ns (a reading carries its last frame's time).
        prc_pid = prc["pid"] if prc else None
        if prc_pid:
            rawtap = ReadingTap(run_dir, ("raw/grid",))
            # the raw tap is connected once it got a poll; the window below starts 0.5 s
            # before the hang: wait for a poll 0.5 s after its first one
            first = wait_for(lambda: rawtap.timed_payloads("raw/grid"), 15, 0.05)
            t_first = first[0][0] if first else time.monotonic()
            wait_for(lambda: rawtap.timed_payloads("raw/grid", t_first + 0.5), 15, 0.05)
            t_hang = time.monotonic()
            os.kill(prc_pid, signal.SIGSTOP)
            time.sleep(1.5)
            os.kill(prc_pid, signal.SIGKILL)
            new = wait_for(lambda: (lambda w: w if w and w.get("pid") not in (None, prc_pid) and
                                    w.get("state") == "running" else None)(
                worker_of(status_json(run_dir), "process")), 10, 0.1)
            check(new is not None, "process killed while hung: restarted by the supervisor")
            wait_for(lambda: tap.last("reading/grid", time.monotonic() - 0.1), 15)
            t_end = time.monotonic() + 0.5

            # the polls up to t_end (a raw poll came after it) and their readings, which
            # follow them: waited for, not a fixed time
            def unmatched():
                ps = [r for t, r in rawtap.timed_payloads("raw/grid")
                      if t_hang - 0.5 <= t <= t_end and r.get("last_of_poll")]
                done = {r.get("receive_time_ns")
                        for r in tap.readings("reading/grid", t_hang - 1.0)}
                return ps, [x for x in ps if x.get("receive_time_ns") not in done]
            wait_for(lambda: rawtap.timed_payloads("raw/grid", t_end) and not unmatched()[1],
                     20, 0.1)
            polls, missing = unmatched()
            lost = (worker_of(status_json(run_dir), "process") or {}).get("counters", {}).get("bus_lost")
            check(len(polls) >= 5 and not missing,
                  "every raw/grid poll published around the hang (%d) became a reading/grid"
                  % len(polls),
                  "%d polls never became readings, process bus_lost = %s: the new process "
                  "meets raw/grid for the first time and does not ask acquire's replay ring "
                  "for the instance's earlier messages (bus/bus.cpp Subscriber::handle)"
                  % (len(missing), lost))
            rawtap.stop()
        rc = p.stop_process()
        check(rc == 0, "meterpipe run exits 0 on SIGTERM", rc)
        tap.stop()
    finally:
        peer_a.stop()
        peer_b.stop()
        if p is not None:
            p.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(mptest.script_main(CK, main, print_tb=True))
