#!/usr/bin/python3
"""End-to-end M-Bus over a serial line (a pty) through `meterpipe run` and `meterpipe scan`.

Runs inside tests/harness/serial_ns.sh (ctest does that for names containing "serial"). The
test plays an M-Bus slave on the master side of a pty whose slave is /dev/ttyS0:
  SND_NKE  10 40 A CS 16      -> E5
  REQ_UD2  10 7B|5B A CS 16   -> RSP_UD long frame(s) built from tests/data/mbus corpus frames
(a repeated FCB gets the last reply again, as EN 13757-2 wants). Every short frame the slave
receives is logged, so the test can assert the FCB sequence.

Checks: scan --mbus finds exactly the answering address (id, manufacturer, medium as
`meterpipe decode mbus` says); reading/<meter> equals the frame's records (as decoded by
`meterpipe decode mbus`), the line is 2400 baud (preset mbus); the FCB alternates 7B/5B after
SND_NKE; a two-telegram reply (first frame ends with DIF 1F) becomes one reading; a damaged
reply and a silent slave give errors and state unavailable without a crash, and polling resumes
with SND_NKE + FCB 1 when the slave answers again; a silent slave at 300 baud (a standard M-Bus
speed) must not get acquire restarted by the watchdog: test_e2e_serial_mbus_slow.py.
Environment: MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import (MP, ENV, ReadingTap, acquire_health, note, state_is,  # noqa: E402
                    values_of, wait_for)
from mptest_mbus import (ADDRESS, FRAMES, TTY, Line, Slave, alternates,  # noqa: E402
                         compare_with_records, decode, fcb_sequence, long_frame, mbus_pipeline,
                         parse_hex, readdress, with_more_follows)

CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check


def main():
    d = tempfile.mkdtemp(prefix="mpmb.", dir="/tmp")
    line = Line()
    p = None
    tap = None
    slave = None
    try:
        check(os.path.realpath(TTY) == line.name, "/dev/ttyS0 -> %s" % line.name)

        emu = readdress(parse_hex(os.path.join(FRAMES, "EMU_EMU-Professional-375-M-Bus.hex")),
                        ADDRESS)
        fin = parse_hex(os.path.join(FRAMES, "FIN-Finder-7E.23.8.230.0020.hex"))
        first = readdress(with_more_follows(fin), ADDRESS)
        hdr = bytearray(fin[7:19])
        hdr[8] = (hdr[8] + 1) & 0xFF  # next access number
        # continuation telegram of the same meter: tariff-2 import (BCD, 10 Wh) and an
        # export register (VIFE 3C), records the first telegram does not have
        second = long_frame(0x08, ADDRESS, 0x72, bytes(hdr) + bytes.fromhex(
            "8C 20 04 56 34 12 00 0C 84 3C 78 56 34 12"))
        emu_js = decode(emu, d, "emu")
        first_js = decode(first, d, "first")
        second_js = decode(second, d, "second")
        check(emu_js.get("manufacturer") == "EMU" and first_js.get("more_records_follow") is True
              and second_js.get("more_records_follow") is False and
              first_js["records"][-1]["id"] == "1F",
              "test frames: EMU (%d bytes); FIN + DIF 1F (%d bytes, more records follow); "
              "continuation (%d bytes)" % (len(emu), len(first), len(second)))

        slave = Slave(line.master, ADDRESS)
        slave.set_frames([emu])
        slave.start()

        # --- scan --mbus -------------------------------------------------------------------
        t0 = time.monotonic()
        r = subprocess.run([MP, "scan", "--mbus", TTY, "--ids", "0-5"], env=ENV,
                           capture_output=True, text=True, timeout=60)
        secs = time.monotonic() - t0
        rows = [l.split() for l in r.stdout.splitlines()[1:] if l[:1].isdigit() and
                "addresses answered" not in l]
        want = [str(ADDRESS), emu_js["id"], emu_js["manufacturer"], emu_js["medium"]]
        check(r.returncode == 0 and rows == [want] and "1 of 6 addresses answered" in r.stdout,
              "scan --mbus --ids 0-5 lists exactly address %d: id %s, %s, %s (%.2f s)"
              % (ADDRESS, want[1], want[2], want[3], secs), r.stdout + r.stderr)
        nke = sorted({a for _, c, a in slave.requests(t0) if c == 0x40})
        check(nke == list(range(0, 6)), "scan sent SND_NKE to addresses 0..5", nke)
        check(line.speed() == termios.B2400, "scan --mbus set the line to 2400 baud",
              line.speed())
        attrs = termios.tcgetattr(line.slave_fd)
        attrs[4] = attrs[5] = termios.B1200
        termios.tcsetattr(line.slave_fd, termios.TCSANOW, attrs)
        r = subprocess.run([MP, "scan", "--mbus", TTY, "--ids", str(ADDRESS), "--baud", "9600"],
                           env=ENV, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and line.speed() == termios.B9600,
              "scan --mbus --baud 9600 sets the line to 9600 baud",
              "speed constant %s (B2400=%d, B9600=%d): supervisor/cli.cpp cmd_scan ignores "
              "--baud 9600 because 9600 is the option's (RTU) default"
              % (line.speed(), termios.B2400, termios.B9600))

        # --- meterpipe run: one telegram -----------------------------------------------------
        p = mbus_pipeline()
        run_dir = p.run_dir
        tap = ReadingTap(run_dir)
        time.sleep(0.3)
        t_run = time.monotonic()
        p.start()
        rd = wait_for(lambda: tap.last("reading/mb"), 15)
        if check(rd is not None, "reading/mb arrives"):
            vs = values_of(rd)
            check(rd.get("protocol") == "mbus", "reading/mb protocol is mbus", rd.get("protocol"))
            bad = compare_with_records(rd, [emu_js])
            check(not bad and len(rd.get("values", [])) >= 10,
                  "every value of reading/mb equals its record in `meterpipe decode mbus` "
                  "(%d values)" % len(rd.get("values", [])), bad[:4])
            expect = {"energy_import_t1_kwh": 1.364, "energy_import_t2_kwh": 0.0,
                      "voltage_l1_v": 225.7, "power_net_w": -2.0, "power_export_w": 2.0,
                      "power_l1_w": -2.0}
            got = {n: vs.get(n, {}).get("number") for n in expect}
            check(all(got[n] is not None and abs(got[n] - expect[n]) < 1e-9 for n in expect),
                  "EMU: energy_import_t1_kwh 1.364, voltage_l1_v 225.7, power_net_w -2 ...", got)
            check(vs.get("energy_import_t1_kwh", {}).get("native_id") == "84 10 03",
                  "native id of energy_import_t1_kwh is its DIF/VIF '84 10 03'",
                  vs.get("energy_import_t1_kwh"))
            names = [v["name"] for v in rd.get("values", [])]
            check(len(names) == len(set(names)), "each name once in reading/mb",
                  sorted({n for n in names if names.count(n) > 1}))
        check(line.speed() == termios.B2400, "acquire set the line to 2400 baud "
              "(preset mbus; 8E1 parity is not visible on a pty)", line.speed())
        # at least 4 polls (500 ms apart) answered: waited for, not a fixed time
        wait_for(lambda: len([c for c in fcb_sequence(slave.requests(t_run), ADDRESS)
                              if c != 0x40]) >= 4, 20, 0.1)
        ctrl = fcb_sequence(slave.requests(t_run), ADDRESS)
        reqs = [c for c in ctrl if c != 0x40]
        check(ctrl[:1] == [0x40] and ctrl.count(0x40) == 1 and len(reqs) >= 4 and
              alternates(ctrl),
              "SND_NKE once, then REQ_UD2 with FCB alternating 7B/5B/7B/5B... (%s)"
              % " ".join("%02X" % c for c in ctrl[:8]), " ".join("%02X" % c for c in ctrl))
        check(slave.repeats == 0, "no REQ_UD2 repeated with the same FCB while replies arrive",
              slave.repeats)
        h = wait_for(lambda: state_is(run_dir, "mb", "ok"), 20)
        check(h is not None and h["counters"].get("errors_mb", 0) == 0,
              "acquire health: state_mb ok, errors_mb 0", h and (h.get("info"), h.get("counters")))
        acq_pid = h["pid"] if h else None

        # --- two telegrams ---------------------------------------------------------------------
        slave.set_frames([first, second])
        t_multi = time.monotonic()
        multi = wait_for(lambda: [r for r in tap.readings("reading/mb", t_multi + 0.6)
                                  if "energy_export_kwh" in values_of(r)], 10)
        # counters from heartbeats sent after the first two-telegram reading: every poll
        # between them got the two-telegram reply
        h0 = mptest.fresh_acquire_health(run_dir) or {}
        c0 = h0.get("counters", {})
        # two more polls after h0 (500 ms apart), seen in a heartbeat: waited for, not a fixed
        # time (heartbeats come within 10 s of a change, later on a loaded machine)
        h1 = wait_for(lambda: (lambda w: w if w and w.get("counters", {}).get("requests_mb", 0)
                               >= c0.get("requests_mb", 0) + 2 else None)(
            mptest.acquire_health(run_dir)), 20, 0.2)
        rs = tap.readings("reading/mb", t_multi + 0.6)
        if check(multi, "two-telegram reply: reading/mb with records of both telegrams"):
            m = rs[-1]
            vs = values_of(m)
            bad = compare_with_records(m, [first_js, second_js])
            check(not bad, "every value equals its record in the two decoded telegrams", bad[:4])
            exp = {"energy_import_t1_kwh": 1728.68, "voltage_l1_v": 230.0,
                   "energy_import_t2_kwh": 1234.56, "energy_export_kwh": 123456.78}
            got = {n: vs.get(n, {}).get("number") for n in exp}
            check(all(got[n] is not None and abs(got[n] - exp[n]) < 1e-6 for n in exp),
                  "telegram 1 (t1 1728.68 kWh, 230 V) and telegram 2 (t2 1234.56 kWh, export "
                  "123456.78 kWh) in one reading", got)
            names_of = [values_of(r) for r in rs]
            check(all("energy_import_t1_kwh" in n and "energy_export_kwh" in n for n in names_of),
                  "no reading carries only one of the two telegrams",
                  [sorted(n)[:4] for n in names_of if "energy_export_kwh" not in n][:2])
            if "mbus_1F" in vs:
                note("the DIF 1F marker itself is a reading value: mbus_1F = %r (text)"
                     % vs["mbus_1F"].get("text"))
            names = [v["name"] for v in m.get("values", [])]
            check(len(names) == len(set(names)), "each name once in the merged reading",
                  sorted({n for n in names if names.count(n) > 1}))
        h1 = h1 or mptest.fresh_acquire_health(run_dir) or {}
        c1 = h1.get("counters", {})
        dreq = c1.get("requests_mb", 0) - c0.get("requests_mb", 0)
        dfr = c1.get("frames_mb", 0) - c0.get("frames_mb", 0)
        check(dreq >= 2 and abs(dfr - 2 * dreq) <= 2,
              "two raw frames per poll (%d frames in %d polls)" % (dfr, dreq), (dfr, dreq))
        ctrl = fcb_sequence(slave.requests(t_run), ADDRESS)
        check(alternates(ctrl) and ctrl.count(0x40) == 1,
              "FCB keeps alternating across and within multi-telegram polls",
              " ".join("%02X" % c for c in ctrl))
        slave.set_frames([emu])

        # --- a damaged reply --------------------------------------------------------------------
        time.sleep(0.6)
        e0 = (acquire_health(run_dir) or {}).get("counters", {}).get("errors_mb", 0)
        slave.set_mode("badcs")
        t_bad = time.monotonic()
        got_err = wait_for(lambda: (acquire_health(run_dir) or {}).get("counters", {})
                           .get("errors_mb", 0) > e0, 20, 0.2)
        check(got_err, "a reply with a wrong checksum counts as an error (errors_mb grows)")
        check(not tap.readings("reading/mb", t_bad + 0.6),
              "no reading from a damaged reply")
        ctl = [c for _, c, a in slave.requests(t_bad) if a == ADDRESS]
        note("after damaged replies the master sent: %s (same-FCB repeats: %d; a new "
             "SND_NKE + 7B instead of repeating the REQ_UD2)"
             % (" ".join("%02X" % c for c in ctl[:6]), slave.repeats))
        # --- a silent slave ---------------------------------------------------------------------
        slave.set_mode("silent")
        t_silent = time.monotonic()
        down = wait_for(lambda: state_is(run_dir, "mb", "unavailable"), 20, 0.2)
        if check(down is not None, "silent slave: state_mb unavailable"):
            check(down["counters"].get("errors_mb", 0) >= e0 + 2, "errors_mb counts the polls",
                  down["counters"].get("errors_mb"))
        t_q = time.monotonic()
        time.sleep(2.0)
        check(not tap.readings("reading/mb", t_q), "no reading/mb while the slave is silent")
        w = acquire_health(run_dir)
        check(w is not None and w["pid"] == acq_pid and w.get("restarts") == 0,
              "acquire kept running (same pid, restarts 0)",
              w and (acq_pid, w["pid"], w.get("restarts")))
        slave.set_mode("normal")
        t_back = time.monotonic()
        back = wait_for(lambda: tap.last("reading/mb", t_back), 10)
        if check(back is not None, "slave answers again: reading/mb resumes"):
            note("first reading %.2f s after the slave answered again" % (time.monotonic() - t_back))
            check(not compare_with_records(back, [emu_js]), "resumed reading equals the frame")
        seq = [(t, c) for t, c, a in slave.requests(t_silent) if a == ADDRESS]
        i = next((k for k, (t, _) in enumerate(seq) if t >= t_back), None)
        ctl = [c for _, c in seq]
        if i is not None and ctl[i] == 0x40:
            good = ctl[i:i + 2] == [0x40, 0x7B]
        else:
            # the first request the slave answers follows a SND_NKE, directly or as the
            # repetition of the REQ_UD2 sent just before it came back
            good = i is not None and i > 0 and (ctl[i - 1:i + 1] == [0x40, 0x7B] or
                                                ctl[max(0, i - 2):i + 1] == [0x40, 0x7B, 0x7B])
        # an SND_NKE the silent slave did not acknowledge resets nothing (the master keeps
        # its FCB): the FCB rule holds from the SND_NKE before the first answered request
        k = max((j for j in range(i + 1) if ctl[j] == 0x40), default=0) if i is not None else 0
        check(good and alternates(ctl[k:]),
              "after the failures: SND_NKE, then REQ_UD2 with FCB 1 (7B), then alternating",
              " ".join("%02X" % c for c in ctl))
        ok = wait_for(lambda: state_is(run_dir, "mb", "ok"), 20, 0.2)
        check(ok is not None and ok["pid"] == acq_pid and ok.get("restarts") == 0,
              "state_mb ok again; acquire never restarted",
              ok and (ok["pid"], ok.get("restarts")))
        rc = p.stop_process()
        check(rc == 0, "meterpipe run exits 0 on SIGTERM", rc)
    finally:
        if slave is not None:
            slave.stop = True
        if tap is not None:
            tap.stop()
        if p is not None:
            p.stop()
        line.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(mptest.script_main(CK, main, print_tb=True, serial=True))
