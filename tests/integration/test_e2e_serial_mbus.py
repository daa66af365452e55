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
speed) must not get acquire restarted by the watchdog.
Environment: MP_BIN_DIR, MP_SOURCE_DIR. One line per check, then `N passed, M failed`.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MP_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("MP_BIN_DIR") or os.path.join(SRC, "build", "bin")
MP = os.path.join(BIN, "meterpipe")
FRAMES = os.path.join(SRC, "tests", "data", "mbus", "test-frames")
TTY = "/dev/ttyS0"
ADDRESS = 5

ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(k, None)

sys.path.insert(0, HERE)
import mptest  # noqa: E402
from mptest import note, wait_for  # noqa: E402
from mptest import kill_proc as kill  # noqa: E402
from mptest import in_serial_harness as in_harness  # noqa: E402

CK = mptest.Checker(handle_signals=False, max_detail=None)
check = CK.check


def plug(target):
    mptest.plug_tty(target, TTY)


started = []


# ---------------------------------------------------------------------------------------
# M-Bus frames

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


# ---------------------------------------------------------------------------------------

class Tap:
    def __init__(self, run_dir):
        self.items = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([MP, "tap", "reading/", "--run-dir", run_dir], env=ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        started.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            r = m.get("envelope", {}).get("reading")
            if r is not None:
                with self.lock:
                    self.items.append((time.monotonic(), m["topic"], r))

    def readings(self, topic, since=0.0):
        with self.lock:
            return [r for t, tp, r in self.items if tp == topic and t >= since]

    def last(self, topic, since=0.0):
        rs = self.readings(topic, since)
        return rs[-1] if rs else None


def acquire_health(run_dir):
    r = subprocess.run([MP, "status", "--json", "--run-dir", run_dir], env=ENV,
                       capture_output=True, timeout=10)
    try:
        st = json.loads(r.stdout)
    except ValueError:
        return None
    for w in st.get("workers", []):
        if w["name"] == "acquire":
            return w
    return None


def state_is(run_dir, meter, want):
    w = acquire_health(run_dir)
    return w if w and w.get("info", {}).get("state_" + meter) == want else None


def vmap(reading):
    out = {}
    for v in reading.get("values", []):
        out.setdefault(v["name"], v)
    return out


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


def write_config(d, run_dir, extra=""):
    cfg = os.path.join(d, "meterpipe.toml")
    with open(cfg, "w") as f:
        f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\n\n[upload]\nenabled = false\n\n'
                '[[meter]]\nname = "mb"\nprotocol = "mbus"\nsource = "serial"\ndevice = "%s"\n'
                'address = %d\ninterval_ms = 500\n%s'
                % (run_dir, os.path.join(d, "state"), TTY, ADDRESS, extra))
    return cfg


def main():
    if not in_harness():
        check(False, "SERIAL TEST NOT RUN (needs tests/harness/serial_ns.sh)")
        return
    d = tempfile.mkdtemp(prefix="mpmb.", dir="/tmp")
    master, slave_fd = os.openpty()
    sup = None
    slave = None
    try:
        tty.setraw(master)
        tty.setraw(slave_fd)  # our own handle keeps the pty up between the product's opens
        os.set_blocking(master, False)
        plug(os.ttyname(slave_fd))
        check(os.path.realpath(TTY) == os.ttyname(slave_fd),
              "/dev/ttyS0 -> %s" % os.ttyname(slave_fd))

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

        slave = Slave(master, ADDRESS)
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
        check(line_speed(slave_fd) == termios.B2400, "scan --mbus set the line to 2400 baud",
              line_speed(slave_fd))
        attrs = termios.tcgetattr(slave_fd)
        attrs[4] = attrs[5] = termios.B1200
        termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
        r = subprocess.run([MP, "scan", "--mbus", TTY, "--ids", str(ADDRESS), "--baud", "9600"],
                           env=ENV, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and line_speed(slave_fd) == termios.B9600,
              "scan --mbus --baud 9600 sets the line to 9600 baud",
              "speed constant %s (B2400=%d, B9600=%d): supervisor/cli.cpp cmd_scan ignores "
              "--baud 9600 because 9600 is the option's (RTU) default"
              % (line_speed(slave_fd), termios.B2400, termios.B9600))

        # --- meterpipe run: one telegram -----------------------------------------------------
        run_dir = os.path.join(d, "run")
        cfg = write_config(d, run_dir)
        tap = Tap(run_dir)
        time.sleep(0.3)
        t_run = time.monotonic()
        sup = subprocess.Popen([MP, "run", "-c", cfg], env=ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(d, "run.log"), "wb"))
        started.append(sup)
        rd = wait_for(lambda: tap.last("reading/mb"), 15)
        if check(rd is not None, "reading/mb arrives"):
            vs = vmap(rd)
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
        check(line_speed(slave_fd) == termios.B2400, "acquire set the line to 2400 baud "
              "(preset mbus; 8E1 parity is not visible on a pty)", line_speed(slave_fd))
        time.sleep(2.0)
        ctrl = fcb_sequence(slave.requests(t_run), ADDRESS)
        reqs = [c for c in ctrl if c != 0x40]
        check(ctrl[:1] == [0x40] and ctrl.count(0x40) == 1 and len(reqs) >= 4 and
              alternates(ctrl),
              "SND_NKE once, then REQ_UD2 with FCB alternating 7B/5B/7B/5B... (%s)"
              % " ".join("%02X" % c for c in ctrl[:8]), " ".join("%02X" % c for c in ctrl))
        check(slave.repeats == 0, "no REQ_UD2 repeated with the same FCB while replies arrive",
              slave.repeats)
        h = wait_for(lambda: state_is(run_dir, "mb", "ok"), 5)
        check(h is not None and h["counters"].get("errors_mb", 0) == 0,
              "acquire health: state_mb ok, errors_mb 0", h and (h.get("info"), h.get("counters")))
        acq_pid = h["pid"] if h else None

        # --- two telegrams ---------------------------------------------------------------------
        slave.set_frames([first, second])
        t_multi = time.monotonic()
        h0 = acquire_health(run_dir) or {}
        multi = wait_for(lambda: [r for r in tap.readings("reading/mb", t_multi + 0.6)
                                  if "energy_export_kwh" in vmap(r)], 10)
        time.sleep(1.6)
        rs = tap.readings("reading/mb", t_multi + 0.6)
        if check(multi, "two-telegram reply: reading/mb with records of both telegrams"):
            m = rs[-1]
            vs = vmap(m)
            bad = compare_with_records(m, [first_js, second_js])
            check(not bad, "every value equals its record in the two decoded telegrams", bad[:4])
            exp = {"energy_import_t1_kwh": 1728.68, "voltage_l1_v": 230.0,
                   "energy_import_t2_kwh": 1234.56, "energy_export_kwh": 123456.78}
            got = {n: vs.get(n, {}).get("number") for n in exp}
            check(all(got[n] is not None and abs(got[n] - exp[n]) < 1e-6 for n in exp),
                  "telegram 1 (t1 1728.68 kWh, 230 V) and telegram 2 (t2 1234.56 kWh, export "
                  "123456.78 kWh) in one reading", got)
            check(all("energy_import_t1_kwh" in vmap(r) and "energy_export_kwh" in vmap(r)
                      for r in rs), "no reading carries only one of the two telegrams",
                  [sorted(vmap(r))[:4] for r in rs if "energy_export_kwh" not in vmap(r)][:2])
            if "mbus_1F" in vs:
                note("the DIF 1F marker itself is a reading value: mbus_1F = %r (text)"
                     % vs["mbus_1F"].get("text"))
            names = [v["name"] for v in m.get("values", [])]
            check(len(names) == len(set(names)), "each name once in the merged reading",
                  sorted({n for n in names if names.count(n) > 1}))
        h1 = acquire_health(run_dir) or {}
        c0, c1 = h0.get("counters", {}), h1.get("counters", {})
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
                           .get("errors_mb", 0) > e0, 6, 0.2)
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
        down = wait_for(lambda: state_is(run_dir, "mb", "unavailable"), 10, 0.2)
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
        check(good and alternates(ctl),
              "after the failures: SND_NKE, then REQ_UD2 with FCB 1 (7B), then alternating",
              " ".join("%02X" % c for c in ctl))
        ok = wait_for(lambda: state_is(run_dir, "mb", "ok"), 5, 0.2)
        check(ok is not None and ok["pid"] == acq_pid and ok.get("restarts") == 0,
              "state_mb ok again; acquire never restarted",
              ok and (ok["pid"], ok.get("restarts")))
        kill(sup)
        check(sup.returncode == 0, "meterpipe run exits 0 on SIGTERM", sup.returncode)
        kill(tap.proc)

        # --- a silent slave at 300 baud ---------------------------------------------------------
        # EN 13757-2 reply timeout at 300 baud: (330 + 11 * 261) / 300 s + 50 ms = 10.7 s,
        # spent inside one mbus_poll::read() without w.progress(): longer than watchdog_s / 2.
        slave.set_mode("silent")
        run2 = os.path.join(d, "run2")
        shutil.rmtree(os.path.join(d, "state"), ignore_errors=True)
        cfg2 = write_config(d, run2, "baud = 300\n")
        sup = subprocess.Popen([MP, "run", "-c", cfg2], env=ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(d, "run2.log"), "wb"))
        started.append(sup)
        t2 = time.monotonic()

        # One poll = SND_NKE timeout + REQ_UD2 timeout, repeated once: about 22.6 s here.
        def settled():
            w = acquire_health(run2)
            if w and (w.get("restarts", 0) > 0 or
                      w.get("counters", {}).get("errors_mb", 0) >= 1):
                return w
            return None
        w = wait_for(settled, 35, 0.3)
        time.sleep(1.0)
        w = acquire_health(run2) or w
        with open(os.path.join(d, "run2.log"), errors="replace") as f:
            stall = [l.strip() for l in f if "no progress" in l or "restart" in l or
                     "heartbeat" in l]
        check(w is not None and w.get("restarts") == 0 and
              w.get("counters", {}).get("errors_mb", 0) >= 1,
              "300 baud, silent slave (watchdog_s 5): the failed poll is counted, acquire not "
              "restarted by the watchdog (%.1f s)" % (time.monotonic() - t2),
              w and ("restarts %s, info %s; log: %s; acquire/mbus_poll.cpp receive() waits "
                     "the whole reply timeout without w.progress()"
                     % (w.get("restarts"), w.get("info"), stall[:2])))
        kill(sup)
    finally:
        if slave is not None:
            slave.stop = True
        for p in reversed(started):
            kill(p, signal.SIGKILL if p is not sup else signal.SIGTERM)
        try:
            os.unlink(TTY)
        except OSError:
            pass
        for fd in (master, slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check(False, "test script ran to the end", repr(e))
    print("%d passed, %d failed" % (CK.passed, CK.failed), flush=True)
    sys.exit(1 if CK.failed else 0)
