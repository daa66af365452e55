"""mptest_mbus: the M-Bus slave and frame helpers of the serial M-Bus end-to-end scripts
(test_e2e_serial_mbus*.py, run inside tests/harness/serial_ns.sh).

The slave answers on the master side of a pty whose slave end is /dev/ttyS0:
  SND_NKE  10 40 A CS 16      -> E5
  REQ_UD2  10 7B|5B A CS 16   -> RSP_UD long frame(s) built from tests/data/mbus corpus frames
(a repeated FCB gets the last reply again, as EN 13757-2 wants). Every short frame it receives
is logged, so a test can assert the FCB sequence.
"""
import json
import os
import select
import subprocess
import termios
import threading
import time
import tty

import mptest
from mptest import MP, ENV, SOURCE_DIR

FRAMES = os.path.join(SOURCE_DIR, "tests", "data", "mbus", "test-frames")
TTY = "/dev/ttyS0"
ADDRESS = 5


def parse_hex(path):
    with open(path) as f:
        return bytes(int(t, 16) for t in f.read().split())


def checksum(b):
    return sum(b) & 0xFF


def long_frame(c, a, ci, data):
    body = bytes([c, a, ci]) + bytes(data)
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([checksum(body), 0x16])


def readdress(frame, a):
    f = bytearray(frame)
    f[5] = a
    f[-2] = checksum(f[4:-2])
    return bytes(f)


def with_more_follows(frame):
    """The same frame with DIF 1F (more records follow) appended; L and CS fixed."""
    body = frame[4:-2] + b"\x1f"
    return long_frame(body[0], body[1], body[2], body[3:])


def decode(frame, d, name):
    """`meterpipe decode mbus` of one frame -> its JSON object."""
    path = os.path.join(d, name + ".hex")
    with open(path, "w") as f:
        f.write(frame.hex(" ") + "\n")
    r = subprocess.run([MP, "decode", "mbus", path], env=ENV, capture_output=True, text=True,
                       timeout=10)
    return json.loads(r.stdout.splitlines()[0])


class Slave(threading.Thread):
    """An M-Bus slave on the pty master. mode: normal | silent | badcs."""

    def __init__(self, master_fd, address):
        super().__init__(daemon=True)
        self.fd = master_fd
        self.address = address
        self.lock = threading.Lock()
        self.frames = []
        self.pos = 0
        self.last_fcb = None
        self.last_reply = None
        self.mode = "normal"
        self.log = []  # (monotonic, control, address)
        self.repeats = 0
        self.stop = False
        self.delay_s = 0.002  # the slave's turnaround

    def set_frames(self, frames):
        with self.lock:
            self.frames = list(frames)
            self.pos = 0

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def requests(self, since=0.0):
        with self.lock:
            return [(t, c, a) for t, c, a in self.log if t >= since]

    def _write(self, data):
        time.sleep(self.delay_s)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [self.fd], [], 0.1)
            except OSError:
                return

    def _handle(self, c, a):
        with self.lock:
            self.log.append((time.monotonic(), c, a))
            mode = self.mode
            if mode == "silent" or a != self.address:
                return
            if c == 0x40:
                self.last_fcb = None
                reply = b"\xe5"
            elif c in (0x5B, 0x7B):
                fcb = bool(c & 0x20)
                if self.last_fcb is not None and fcb == self.last_fcb and self.last_reply:
                    self.repeats += 1
                    reply = self.last_reply
                else:
                    if not self.frames:
                        return
                    reply = self.frames[self.pos % len(self.frames)]
                    self.pos = (self.pos + 1) % len(self.frames)
                    self.last_fcb = fcb
                    self.last_reply = reply
                if mode == "badcs":
                    b = bytearray(reply)
                    b[-2] = (b[-2] + 1) & 0xFF
                    reply = bytes(b)
            else:
                return
        self._write(reply)

    def run(self):
        buf = b""
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            buf += chunk
            while len(buf) >= 5:
                if buf[0] != 0x10:
                    buf = buf[1:]
                    continue
                if buf[4] == 0x16 and checksum(buf[1:3]) == buf[3]:
                    c, a = buf[1], buf[2]
                    buf = buf[5:]
                    self._handle(c, a)
                else:
                    buf = buf[1:]


def compare_with_records(reading, decoded_frames):
    """Every reading value must come from a record of the decoded frames (by native id) with
    the same number (Wh -> kWh for *_kwh); returns a list of mismatches."""
    recs = {}
    for fr in decoded_frames:
        for rec in fr["records"]:
            recs.setdefault(rec["id"], rec)
    bad = []
    for v in reading.get("values", []):
        rec = recs.get(v.get("native_id"))
        if rec is None:
            bad.append(("no record", v))
            continue
        if not isinstance(rec.get("value"), (int, float)):
            continue
        want = rec["value"]
        if v["name"] == "power_import_w":  # derived from the net power record
            want = max(want, 0)
        elif v["name"] == "power_export_w":
            want = max(-want, 0)
        elif v["name"].endswith("_kwh") and rec.get("unit") == "Wh":
            want = want / 1000.0
        got = v.get("number", 0.0)
        if abs(got - want) > 1e-9 * max(1.0, abs(want)):
            bad.append((v["name"], got, want))
    return bad


def fcb_sequence(log, addr):
    """Control bytes to `addr` in order."""
    return [c for _, c, a in log if a == addr]


def alternates(ctrl):
    """True when every REQ_UD2 after each SND_NKE starts with 7B and alternates 7B/5B; a
    request may be repeated once with the same FCB (EN 13757-2: after a missing or damaged
    reply the master repeats the request unchanged)."""
    expect = None
    last = None
    for c in ctrl:
        if c == 0x40:
            expect = 0x7B
            last = None
            continue
        if c not in (0x5B, 0x7B):
            return False
        if c == last:  # a repetition of the unanswered request
            last = None
            continue
        if expect is not None and c != expect:
            return False
        expect = 0x5B if c == 0x7B else 0x7B
        last = c
    return True


def line_speed(slave_fd):
    a = termios.tcgetattr(slave_fd)
    return a[4]


def mbus_pipeline(extra="", general=""):
    """A Pipeline with one M-Bus meter "mb" at ADDRESS on source = "serial" /dev/ttyS0,
    polled every 500 ms (extra: more meter keys; general: [general] lines); upload off."""
    return mptest.Pipeline('[upload]\nenabled = false\n\n[[meter]]\nname = "mb"\n'
                           'protocol = "mbus"\nsource = "serial"\ndevice = "%s"\n'
                           'address = %d\ninterval_ms = 500\n%s' % (TTY, ADDRESS, extra),
                           general=general, prefix="mpmb.")


class Line:
    """A raw pty pair whose slave end is /dev/ttyS0 (the test keeps its own handle on it, so
    the pty stays up between the product's opens); the master end is for the Slave."""

    def __init__(self):
        self.master, self.slave_fd = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master, False)
        self.name = os.ttyname(self.slave_fd)
        mptest.plug_tty(self.name, TTY)

    def speed(self):
        return line_speed(self.slave_fd)

    def close(self):
        try:
            os.unlink(TTY)
        except OSError:
            pass
        for fd in (self.master, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass
