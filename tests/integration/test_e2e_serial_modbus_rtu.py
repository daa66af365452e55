#!/usr/bin/python3
"""End-to-end Modbus RTU over a serial line (a pty pair) through `meterpipe run`.

Runs inside tests/harness/serial_ns.sh (ctest does that for names containing "serial"):
  socat -d -d pty,raw,echo=0,link=D/A pty,raw,echo=0,link=D/B
  a pymodbus RTU server (framer=ModbusRtuFramer, 9600 8N1) serves an SDM630 image on D/A,
  /dev/ttyS0 -> realpath(D/B), and meterpipe's acquire (libmodbus RTU) polls /dev/ttyS0.
What a pty cannot show: parity, framing errors, baud (stored, not enforced).

Checks: `meterpipe read --rtu` and `scan --rtu` against the peer; `meterpipe run` with a
source = "serial" Modbus meter: reading/<meter> equals the image, the line is set to 9600 8N1;
the peer stops answering -> state unavailable, errors counted, acquire not restarted; the peer
returns -> readings resume.
Environment: MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import (MP, ENV, ReadingTap, note, plug_tty, state_is, values_of,  # noqa: E402
                    wait_for)
from mptest import kill_proc as kill  # noqa: E402
from mptest_modbus import SDM630, sdm_image, sdm_mismatches, sdm_values  # noqa: E402

TTY = "/dev/ttyS0"
CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check
started = []

SDM_VALUES = sdm_values({"voltage_l1_v": 229.5, "power_net_w": 2875.25, "frequency_hz": 49.75,
                         "energy_import_kwh": 4321.5, "energy_export_kwh": 12.125}, 10.0, 0.5)

RTU_PEER = r'''
import json, logging, sys
logging.basicConfig(level=logging.CRITICAL)
from pymodbus.datastore import ModbusServerContext, ModbusSlaveContext, ModbusSparseDataBlock
from pymodbus.server import StartSerialServer
from pymodbus.transaction import ModbusRtuFramer
port, image = sys.argv[1], json.load(open(sys.argv[2]))
def block(regs):
    return ModbusSparseDataBlock({int(a): int(v) & 0xFFFF for a, v in regs.items()})
slaves = {int(u): ModbusSlaveContext(di=block({}), co=block({}), hr=block(s.get("hr", {})),
                                     ir=block(s.get("ir", {})), zero_mode=True)
          for u, s in image["units"].items()}
ctx = ModbusServerContext(slaves=slaves, single=False)
# parity 'N': with 'E' pymodbus hits EINVAL on a pty (logged at DEBUG only) and serves nothing
StartSerialServer(context=ctx, framer=ModbusRtuFramer, port=port, baudrate=9600, parity="N",
                  bytesize=8, stopbits=1, timeout=0.005)
'''


def main():
    for mod in ("pymodbus", "serial", "serial_asyncio"):
        r = subprocess.run(["/usr/bin/python3", "-c", "import " + mod], capture_output=True)
        if not check(r.returncode == 0, "/usr/bin/python3 can import %s (Debian python3-%s)"
                     % (mod, {"serial": "serial", "serial_asyncio": "serial-asyncio"}.get(mod, mod)),
                     r.stderr.decode().strip().splitlines()[-1:] if r.returncode else ""):
            return
    if not check(shutil.which("socat") is not None, "socat is installed"):
        return

    d = tempfile.mkdtemp(prefix="mprtu.", dir="/tmp")
    sup = None
    peer = None
    try:
        socat = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0,link=%s/A" % d,
                                  "pty,raw,echo=0,link=%s/B" % d], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(d, "socat.log"), "wb"))
        started.append(socat)
        if not check(wait_for(lambda: os.path.exists(d + "/A") and os.path.exists(d + "/B"), 5),
                     "socat made the pty pair A <-> B"):
            return
        b_real = os.path.realpath(d + "/B")
        plug_tty(b_real, TTY)
        check(os.path.realpath(TTY) == b_real and b_real.startswith("/dev/pts/"),
              "/dev/ttyS0 -> %s (B's pty slave)" % b_real)

        image = sdm_image(SDM_VALUES)
        img_path = os.path.join(d, "image.json")
        with open(img_path, "w") as f:
            json.dump({"units": {"1": image}}, f)
        peer_py = os.path.join(d, "rtu_peer.py")
        with open(peer_py, "w") as f:
            f.write(RTU_PEER)

        def start_peer():
            p = subprocess.Popen(["/usr/bin/python3", peer_py, d + "/A", img_path],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(d, "peer.log"), "ab"))
            started.append(p)
            return p

        peer = start_peer()

        # --- meterpipe read --rtu ---------------------------------------------------------
        def read_once(*extra):
            r = subprocess.run([MP, "read", "--rtu", TTY, "--id", "1", "--type", "sdm630"] +
                               list(extra), env=ENV, capture_output=True, text=True, timeout=30)
            try:
                return r, json.loads(r.stdout)
            except ValueError:
                return r, None
        # the peer needs a moment to import pymodbus and open A
        r, js = wait_for(lambda: (lambda rj: rj if rj[1] and rj[1].get("ok") else None)(read_once()),
                         15, 0.3) or read_once()
        if check(js is not None and js.get("ok") is True and r.returncode == 0,
                 "read --rtu /dev/ttyS0 --id 1 --type sdm630: ok (libmodbus opens the pty)",
                 (r.returncode, r.stdout[:300], r.stderr[:300])):
            got = {v["name"]: v for v in js["values"]}
            bad = sdm_mismatches(got, SDM_VALUES, "value", "register")
            check(not bad, "read --rtu: all %d SDM630 values and registers equal the image"
                  % len(SDM630), bad[:3])
        r, js = read_once("--parity", "even")
        check(js is not None and js.get("ok") is True,
              "read --rtu --parity even: 8E1 configures on the pty (shim), bytes still flow",
              (r.returncode, r.stdout[:200], r.stderr[:300]))
        t0 = time.monotonic()
        r = subprocess.run([MP, "scan", "--rtu", TTY, "--ids", "1-3", "--timeout-ms", "300"],
                           env=ENV, capture_output=True, text=True, timeout=60)
        secs = time.monotonic() - t0
        rows = [l.split() for l in r.stdout.splitlines()]
        rows = [p for p in rows if len(p) == 4 and p[0].isdigit() and p[3] == "V"]
        check(r.returncode == 0 and [p[:3] for p in rows] == [["1", "sdm630", "229.5"]] and
              "1 of 3 ids answered" in r.stdout,
              "scan --rtu --ids 1-3 finds exactly unit 1, sdm630, 229.5 V (%.2f s)" % secs,
              r.stdout + r.stderr)

        # --- meterpipe run with a serial Modbus meter ------------------------------------
        run_dir = os.path.join(d, "run")
        cfg = os.path.join(d, "meterpipe.toml")
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\n\n[upload]\nenabled = false\n\n'
                    '[[meter]]\nname = "rtu"\nprotocol = "modbus"\nsource = "serial"\n'
                    'device = "%s"\nbaud = 9600\nparity = "none"\nunit_id = 1\ntype = "sdm630"\n'
                    'interval_ms = 500\ntimeout_ms = 300\n'
                    % (run_dir, os.path.join(d, "state"), TTY))
        tap = ReadingTap(run_dir)
        time.sleep(0.3)
        sup = subprocess.Popen([MP, "run", "-c", cfg], env=ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(d, "run.log"), "wb"))
        started.append(sup)
        rd = wait_for(lambda: tap.last("reading/rtu"), 15)
        if check(rd is not None, "reading/rtu arrives (acquire polls /dev/ttyS0 over RTU)"):
            vs = values_of(rd)
            bad = sdm_mismatches(vs, SDM_VALUES, "number", "native_id")
            check(not bad, "reading/rtu: all %d SDM630 registers equal the image, ir:0x.... ids"
                  % len(SDM630), bad[:3])
            check(vs.get("voltage_l1_v", {}).get("number") == 229.5 and
                  vs.get("power_net_w", {}).get("number") == 2875.25 and
                  vs.get("power_import_w", {}).get("number") == 2875.25 and
                  vs.get("power_export_w", {}).get("number") == 0 and
                  vs.get("energy_import_kwh", {}).get("number") == 4321.5 and
                  vs.get("frequency_hz", {}).get("number") == 49.75,
                  "voltage_l1_v 229.5, power_net_w 2875.25 (import), energy_import_kwh 4321.5, "
                  "frequency_hz 49.75")
        # What acquire set on the line (a second fd on the same pty sees the tty's termios).
        fd = os.open(b_real, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            attrs = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        check(attrs[4] == termios.B9600 and attrs[5] == termios.B9600 and
              attrs[2] & termios.CSIZE == termios.CS8 and not attrs[2] & termios.CSTOPB and
              not attrs[3] & (termios.ICANON | termios.ECHO),
              "the line is 9600 baud, CS8, 1 stop bit, raw (parity is not visible on a pty)",
              attrs[:6])
        # about every 500 ms: measured on the readings' receive times (acquire's clock at each
        # poll's reply) over 6 readings; a loaded machine delays their way to the tap, not the
        # poll schedule
        t0 = time.monotonic()
        rate = wait_for(lambda: (lambda rs: rs if len(rs) >= 6 else None)(
            tap.readings("reading/rtu", t0)), 20, 0.1) or tap.readings("reading/rtu", t0)
        rts = [int(r.get("receive_time_ns", 0)) / 1e9 for r in rate[:6]]
        gap = (rts[-1] - rts[0]) / (len(rts) - 1) if len(rts) >= 2 else 0.0
        check(len(rts) == 6 and 0.4 <= gap <= 2 / 3,
              "reading/rtu about every 500 ms (%.3f s apart on average over %d readings)"
              % (gap, len(rts)), rts)
        # requests_rtu travels in acquire's heartbeat (within 10 s of a change)
        h = wait_for(lambda: (lambda w: w if w and w["counters"].get("requests_rtu", 0) >= 5
                              else None)(state_is(run_dir, "rtu", "ok")), 20, 0.2)
        h = h or state_is(run_dir, "rtu", "ok")
        check(h is not None and h["counters"].get("errors_rtu") == 0 and
              h["counters"].get("requests_rtu", 0) >= 5,
              "acquire health: state_rtu ok, errors_rtu 0", h and (h.get("info"), h.get("counters")))
        acq_pid = h["pid"] if h else None

        # --- the peer stops answering (the line stays: socat keeps both ends) -------------
        kill(peer, signal.SIGKILL)
        t_kill = time.monotonic()
        down = wait_for(lambda: state_is(run_dir, "rtu", "unavailable"), 15, 0.2)
        if check(down is not None, "peer silent: state_rtu unavailable"):
            note("unavailable %.2f s after the peer stopped" % (time.monotonic() - t_kill))
            check(down["counters"].get("errors_rtu", 0) >= 3, "errors_rtu counts the timeouts",
                  down["counters"].get("errors_rtu"))
        t_q = time.monotonic()
        time.sleep(1.0)
        check(not tap.readings("reading/rtu", t_q + 0.2), "no reading/rtu while the peer is silent")
        peer = start_peer()
        t_back = time.monotonic()
        back = wait_for(lambda: tap.last("reading/rtu", t_back), 30, 0.1)
        if check(back is not None, "reading/rtu resumes when the peer answers again"):
            note("first reading %.2f s after the peer was restarted (python start ~1 s + "
                 "device backoff)" % (time.monotonic() - t_back))
            vs = {v["name"]: v for v in back.get("values", [])}
            check(not sdm_mismatches(vs, SDM_VALUES, "number", "native_id"),
                  "resumed reading/rtu equals the image")
        ok = wait_for(lambda: state_is(run_dir, "rtu", "ok"), 20, 0.2)
        check(ok is not None and ok["pid"] == acq_pid and ok.get("restarts") == 0,
              "state_rtu ok again; acquire not restarted (same pid, restarts 0)",
              ok and (acq_pid, ok["pid"], ok.get("restarts")))
        kill(sup)
        check(sup.returncode == 0, "meterpipe run exits 0 on SIGTERM", sup.returncode)
    finally:
        for p in reversed(started):
            kill(p, signal.SIGKILL if p is not sup else signal.SIGTERM)
        try:
            os.unlink(TTY)
        except OSError:
            pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(mptest.script_main(CK, main, print_tb=True, serial=True))
