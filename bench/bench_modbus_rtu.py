#!/usr/bin/python3
"""Modbus poll figures: an SDM630 map over RTU at 9600 baud (pty), and over TCP, end to end.

  bench/bench_modbus_rtu.py [seconds-per-phase]        (default 4)

Environment: MP_BIN_DIR (default build/bin), MP_SOURCE_DIR. Needs socat, Debian
python3-pymodbus + python3-serial + python3-serial-asyncio, mbpoll (optional). Prints figures;
it is not a test. Everything runs on 127.0.0.1 / pseudo-terminals, nothing needs root.

RTU: a pymodbus RTU server (ModbusRtuFramer) serves the SDM630 image on one pty; meterpipe's
acquire (libmodbus RTU) polls the other. Two lines:
  * pty        : the two ptys joined directly (socat). A pty does not enforce the baud rate, so
                 this is the software floor (libmodbus + pymodbus + kernel), not wire time.
  * 9600 line  : the ptys joined by a relay that delays every chunk by its time on the wire at
                 9600 baud, 11 bits per character (start + 8 data + parity/2nd stop + stop), one
                 direction at a time; it does not add the 3.5-character inter-frame silence.
and the theoretical minimum: bytes on the wire x 11 / baud + 3.5 characters per frame.
Poll time = time between the last responses of consecutive polls while acquire polls back to
back (interval_ms = 10 < poll time), from the receive_time_ns of raw/<meter> (one per response).

TCP: the same image from tests/integration/modbus_peer.py; acquire with interval_ms = 10
(the config's minimum, so at most 100 polls/s by design), `meterpipe read` one process per
poll, and mbpoll (one process per request; the SDM630 plan needs 5).
"""
import json
import os
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MP_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, ".."))
BIN = os.environ.get("MP_BIN_DIR") or os.path.join(SRC, "build", "bin")
MP = os.path.join(BIN, "meterpipe")
PEER_TCP = os.path.join(SRC, "tests", "integration", "modbus_peer.py")
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
BAUD = 9600
BITS_PER_CHAR = 11

ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(k, None)

started = []

# process/modbus_maps.cpp kSdm630: input registers, float32 (2 registers) each
SDM630_ADDRS = [0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x1E, 0x20, 0x22, 0x34,
                0x38, 0x3C, 0x3E, 0x46, 0x48, 0x4A, 0x54, 0xEA, 0xEC, 0xEE, 0xF8, 0x156, 0x15A,
                0x15C, 0x15E, 0x160, 0x162, 0x164, 0x166, 0x168, 0x16A]


def plan_reads(spans, max_gap=10, max_count=125):
    """acquire/modbus_poll.cpp plan_reads(): coalesce (start, count) spans."""
    out = []
    cur = None
    for s, c in sorted(spans):
        e = s + c
        if cur is not None:
            cs, cc = cur
            ce = cs + cc
            if e <= ce:
                continue
            gap = s - ce if s > ce else 0
            if gap <= max_gap and e - cs <= max_count:
                cur = (cs, e - cs)
                continue
            out.append(cur)
        cur = (s, min(c, max_count))
    if cur is not None:
        out.append(cur)
    return out


def image():
    ir = {a: 0 for a in range(0, 0x016C)}
    for i, a in enumerate(SDM630_ADDRS):
        u = struct.unpack(">I", struct.pack(">f", 200.0 + 0.5 * i))[0]
        ir[a], ir[a + 1] = u >> 16, u & 0xFFFF
    return {"units": {"1": {"ir": {str(a): v for a, v in ir.items()}}}}


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
StartSerialServer(context=ModbusServerContext(slaves=slaves, single=False),
                  framer=ModbusRtuFramer, port=port, baudrate=9600, parity="N", bytesize=8,
                  stopbits=1, timeout=0.005)
'''


def wait_for(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def stop_all():
    for p in reversed(started):
        if p.poll() is None:
            p.kill()
            p.wait()
    started.clear()


class Relay:
    """Joins two pty masters; each chunk is delivered after its wire time at `baud`, one
    direction at a time (RS-485 is half duplex)."""

    def __init__(self, fd_a, fd_b, baud):
        self.fds = (fd_a, fd_b)
        self.char_s = BITS_PER_CHAR / baud
        self.line_free = 0.0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        a, b = self.fds
        while not self.stop:
            r, _, _ = select.select([a, b], [], [], 0.05)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                t = time.monotonic()
                end = max(t, self.line_free) + len(data) * self.char_s
                self.line_free = end
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    time.sleep(left if left > 0.002 else 0)
                os.write(b if fd == a else a, data)


def raw_tap(run_dir):
    """`meterpipe tap raw/` -> list of (receive_time_ns, last_of_poll) filled by a thread."""
    items = []
    p = subprocess.Popen([MP, "tap", "raw/", "--run-dir", run_dir], env=ENV,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    started.append(p)

    def rd():
        for line in p.stdout:
            try:
                raw = json.loads(line)["envelope"]["raw"]
            except (ValueError, KeyError):
                continue
            items.append((time.monotonic(), int(raw["receive_time_ns"]),
                          bool(raw.get("last_of_poll"))))
    threading.Thread(target=rd, daemon=True).start()
    return items


def acquire_polls(d, meter_toml, seconds):
    """Runs `meterpipe run` polling back to back; returns (poll periods s, in-poll spans s)."""
    run_dir = tempfile.mkdtemp(prefix="run.", dir=d)
    cfg = os.path.join(d, "bench.toml")
    with open(cfg, "w") as f:
        f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s/state"\n\n[upload]\nenabled = false\n\n'
                '[[meter]]\nname = "m"\n%sinterval_ms = 10\ntimeout_ms = 1000\n'
                % (run_dir, run_dir, meter_toml))
    items = raw_tap(run_dir)
    time.sleep(0.3)
    sup = subprocess.Popen([MP, "run", "-c", cfg], env=ENV, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "run.log"), "ab"))
    started.append(sup)
    wait_for(lambda: len(items) > 10, 15)
    t0 = time.monotonic() + 0.5
    time.sleep(0.5 + seconds)
    sup.terminate()
    sup.wait()
    win = [(w, last) for t, w, last in list(items) if t >= t0]
    lasts = [w for w, last in win if last]
    periods = [(b - a) / 1e9 for a, b in zip(lasts, lasts[1:])]
    # within a poll: first response .. last response covers 4 of the 5 exchanges
    spans, cur = [], []
    for w, last in win:
        cur.append(w)
        if last:
            if len(cur) == 5:
                spans.append((cur[-1] - cur[0]) / 1e9 * 5 / 4)
            cur = []
    return periods, spans


def one_shot(argv, n):
    times = []
    ok = 0
    for _ in range(n):
        t = time.monotonic()
        r = subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=30)
        times.append(time.monotonic() - t)
        ok += r.returncode == 0
    return times, ok


def ms(x):
    return "%7.1f ms" % (x * 1000)


def theoretical(plan, baud, bits):
    req_bytes = 8 * len(plan)                            # id fc start(2) count(2) crc(2)
    rsp_bytes = sum(5 + 2 * c for _, c in plan)          # id fc n data crc(2)
    total = req_bytes + rsp_bytes
    char = bits / baud
    gap = 3.5 * char if baud <= 19200 else 0.00175
    return total, req_bytes, rsp_bytes, total * char, 2 * len(plan) * gap


def main():
    for tool in ("socat",):
        if not shutil.which(tool):
            print("%s not installed: RTU figures skipped" % tool)
    d = tempfile.mkdtemp(prefix="mpbr.", dir="/tmp")
    try:
        img = os.path.join(d, "image.json")
        with open(img, "w") as f:
            json.dump(image(), f)
        peer_py = os.path.join(d, "rtu_peer.py")
        with open(peer_py, "w") as f:
            f.write(RTU_PEER)
        plan = plan_reads([(a, 2) for a in SDM630_ADDRS])
        total, rq, rs, wire, gaps = theoretical(plan, BAUD, BITS_PER_CHAR)
        print("SDM630 map: %d registers in %d requests %s" %
              (2 * len(SDM630_ADDRS), len(plan), ", ".join("%d+%d" % p for p in plan)))
        print("theoretical minimum at %d baud, %d bits/char: %d bytes (%d request + %d response)"
              " = %s on the wire + %d x 3.5-char gaps %s = %s per poll (%.2f polls/s)"
              % (BAUD, BITS_PER_CHAR, total, rq, rs, ms(wire), 2 * len(plan), ms(gaps),
                 ms(wire + gaps), 1 / (wire + gaps)))
        print("  (8N1 = 10 bits/char: %s; a real meter adds its own turnaround per request, "
              "typically 5-50 ms)" % ms(sum(theoretical(plan, BAUD, 10)[3:5])))

        # --- RTU over ptys -----------------------------------------------------------------
        for label, paced in (("pty (baud not enforced)", False),
                             ("9600 line emulated by the relay", True)):
            ma, sa = os.openpty()
            mb, sb = os.openpty()
            for fd in (ma, sa, mb, sb):
                tty.setraw(fd)
            relay = Relay(ma, mb, BAUD if paced else 10 ** 9)
            pa, pb = os.ttyname(sa), os.ttyname(sb)
            peer = subprocess.Popen(["/usr/bin/python3", peer_py, pa, img],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(d, "peer.log"), "ab"))
            started.append(peer)
            readable = wait_for(lambda: subprocess.run(
                [MP, "read", "--rtu", pb, "--id", "1", "--type", "sdm630"], env=ENV,
                capture_output=True, timeout=30).returncode == 0, 20, 0.3)
            if not readable:
                print("RTU %s: the pymodbus RTU peer did not answer (see %s/peer.log)" % (label, d))
                relay.stop = True
                stop_all()
                continue
            periods, spans = acquire_polls(
                d, 'protocol = "modbus"\nsource = "serial"\ndevice = "%s"\nbaud = 9600\n'
                   'parity = "none"\nunit_id = 1\ntype = "sdm630"\n' % pb, SECONDS)
            if periods:
                print("RTU %-32s acquire back to back: %s per poll (median of %d; in-poll %s), "
                      "%.1f polls/s"
                      % (label, ms(statistics.median(periods)), len(periods),
                         ms(statistics.median(spans)) if spans else "?",
                         1 / statistics.median(periods)))
            if not paced:
                t, ok = one_shot([MP, "read", "--rtu", pb, "--id", "1", "--type", "sdm630"], 20)
                print("RTU %-32s `meterpipe read` (exec + open + 5 requests): %s median, %d/20 ok"
                      % (label, ms(statistics.median(t)), ok))
                if shutil.which("mbpoll"):
                    argv = ["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-0",
                            "-t", "3:hex", "-1", "-o", "1"]
                    per_poll = []
                    good = 0
                    for _ in range(10):
                        t0 = time.monotonic()
                        for s, c in plan:
                            r = subprocess.run(argv + ["-r", str(s), "-c", str(c), pb], env=ENV,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, timeout=30)
                            good += r.returncode == 0
                        per_poll.append(time.monotonic() - t0)
                    print("RTU %-32s mbpoll, 5 processes per poll: %s median, %d/%d requests ok"
                          % (label, ms(statistics.median(per_poll)), good, 10 * len(plan)))
            relay.stop = True
            stop_all()
            for fd in (ma, sa, mb, sb):
                os.close(fd)

        # --- TCP -------------------------------------------------------------------------------
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        peer = subprocess.Popen(["/usr/bin/python3", PEER_TCP, "--port", str(port), "--image", img],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        started.append(peer)

        def listening():
            c = socket.socket()
            try:
                c.connect(("127.0.0.1", port))
                return True
            except OSError:
                return False
            finally:
                c.close()
        wait_for(listening, 20)
        periods, spans = acquire_polls(
            d, 'protocol = "modbus"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\nunit_id = 1\n'
               'type = "sdm630"\n' % port, SECONDS)
        if periods:
            print("TCP acquire, interval_ms 10 (config minimum): %s per poll, %.1f polls/s "
                  "(in-poll %s = %.0f polls/s if back to back)"
                  % (ms(statistics.median(periods)), 1 / statistics.median(periods),
                     ms(statistics.median(spans)), 1 / max(1e-9, statistics.median(spans))))
        t, ok = one_shot([MP, "read", "--tcp", "127.0.0.1:%d" % port, "--id", "1",
                          "--type", "sdm630"], 30)
        print("TCP `meterpipe read`, one process per poll (5 requests): %s, %.1f polls/s, %d/30 ok"
              % (ms(statistics.median(t)), 1 / statistics.median(t), ok))
        if shutil.which("mbpoll"):
            argv = ["mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-0", "-t", "3:float",
                    "-B", "-1", "-o", "1"]
            per_poll = []
            good = 0
            for _ in range(10):
                t0 = time.monotonic()
                for st, c in plan:
                    r = subprocess.run(argv + ["-r", str(st), "-c", str(c // 2), "127.0.0.1"],
                                       env=ENV, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, timeout=30)
                    good += r.returncode == 0
                per_poll.append(time.monotonic() - t0)
            print("TCP mbpoll, the same 5 ranges, one process per request: %s per poll, "
                  "%.1f polls/s, %d/%d requests ok"
                  % (ms(statistics.median(per_poll)), 1 / statistics.median(per_poll), good,
                     10 * len(plan)))
        else:
            print("mbpoll not installed: skipped")
        print("(library-level TCP polls/s without process or interval limits: build/bench/"
              "bench_modbus)")
    finally:
        stop_all()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
