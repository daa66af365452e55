#!/usr/bin/python3
"""M-Bus poll figures: acquire polling one slave at 2400 baud (8E1) over a pty.

  bench/bench_mbus_poll.py [seconds-per-phase]        (default 6)

Re-executes itself inside tests/harness/serial_ns.sh (libserialport needs /dev/ttyS0 with a
/sys/class/tty entry; PTYSHIM defaults to $MP_BUILD_DIR/lib/ptyshim.so or build/lib). Needs
root or user namespaces. Prints figures; it is not a test.

The slave (this script, on the pty master) answers REQ_UD2 with a 250-byte RSP_UD: the
3-phase EMU Professional 375 frame of the libmbus corpus (L = 0xF4), the size class of a full
PRO380-Mb style 3-phase readout (about 40 records); and, as a second case, that reply split in
two telegrams (first with DIF 1F). Two lines:
  * pty       : the slave answers at once. A pty does not enforce the baud rate, so this is
                the software floor of a poll (libserialport + acquire + this slave), not wire time.
  * 2400 line : the slave waits as the wire would: REQ_UD2 5 chars, turnaround 11 bit times
                (EN 13757-2 minimum), and sends the reply at 11 bits per character (start, 8 data,
                even parity, stop) in 8-byte chunks.
Theoretical minimum per poll: (5 + reply bytes) x 11 / 2400 + 11 bit times of turnaround per
telegram. Poll time = time between consecutive REQ_UD2 (first telegram) seen by the slave while
acquire polls back to back (interval_ms = 10 < poll time); in-poll = REQ_UD2 seen by the slave ->
raw/<meter> published by acquire (same CLOCK_MONOTONIC).
"""
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MP_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, ".."))
BUILD = os.environ.get("MP_BUILD_DIR") or os.path.join(SRC, "build")
BIN = os.environ.get("MP_BIN_DIR") or os.path.join(BUILD, "bin")
MP = os.path.join(BIN, "meterpipe")
FRAME = os.path.join(SRC, "tests", "data", "mbus", "test-frames",
                     "EMU_EMU-Professional-375-M-Bus.hex")
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
BAUD = 2400
BITS = 11
ADDRESS = 5
TTY = "/dev/ttyS0"

ENV = dict(os.environ)
for k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(k, None)


def reexec_in_harness():
    if os.environ.get("MP_SERIAL_HARNESS") == "1":
        return
    ns = os.path.join(SRC, "tests", "harness", "serial_ns.sh")
    env = dict(os.environ)
    env.setdefault("PTYSHIM", os.path.join(BUILD, "lib", "ptyshim.so"))
    env["MP_SOURCE_DIR"], env["MP_BIN_DIR"] = SRC, BIN
    os.execve(ns, [ns, os.path.abspath(__file__)] + sys.argv[1:], env)


def checksum(b):
    return sum(b) & 0xFF


def long_frame(c, a, ci, data):
    body = bytes([c, a, ci]) + bytes(data)
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([checksum(body), 0x16])


def split_in_two(frame):
    """The frame's records in two telegrams: the first ends with DIF 1F."""
    body = frame[4:-2]
    c, a, ci, hdr, recs = body[0], body[1], body[2], body[3:15], body[15:]
    # cut between records: walk DIF/DIFE/VIF/VIFE/data for the common fixed-length codings
    sizes = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 6, 7: 8, 9: 1, 10: 2, 11: 3, 12: 4, 14: 6}
    starts, i = [], 0
    while i < len(recs):
        starts.append(i)
        dif = recs[i]
        i += 1
        while recs[i - 1] & 0x80:
            i += 1
        i += 1  # VIF
        while recs[i - 1] & 0x80:
            i += 1
        i += sizes.get(dif & 0x0F, 0)
    cut = starts[len(starts) // 2]
    one = long_frame(c, a, ci, hdr + recs[:cut] + b"\x1f")
    hdr2 = bytearray(hdr)
    hdr2[8] = (hdr2[8] + 1) & 0xFF
    two = long_frame(c, a, ci, bytes(hdr2) + recs[cut:])
    return one, two


class Slave(threading.Thread):
    def __init__(self, fd, frames, paced):
        super().__init__(daemon=True)
        self.fd, self.frames, self.paced = fd, frames, paced
        self.char_s = BITS / BAUD
        self.pos = 0
        self.last_fcb = None
        self.last = None
        self.req_times = []  # monotonic time of each REQ_UD2 that starts a readout
        self.stop = False

    def send(self, data):
        if not self.paced:
            os.write(self.fd, data)
            return
        t = time.monotonic() + 11 / BAUD  # turnaround: 11 bit times
        for k in range(0, len(data), 8):
            chunk = data[k:k + 8]
            t += len(chunk) * self.char_s
            left = t - time.monotonic()
            if left > 0:
                time.sleep(left)
            os.write(self.fd, chunk)

    def run(self):
        buf = b""
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            while len(buf) >= 5:
                if not (buf[0] == 0x10 and buf[4] == 0x16 and checksum(buf[1:3]) == buf[3]):
                    buf = buf[1:]
                    continue
                c, a = buf[1], buf[2]
                buf = buf[5:]
                t_seen = time.monotonic()
                if self.paced:
                    time.sleep(max(0.0, 5 * self.char_s - (time.monotonic() - t_seen)))
                if a != ADDRESS:
                    continue
                if c == 0x40:
                    self.last_fcb = None
                    self.send(b"\xe5")
                elif c in (0x5B, 0x7B):
                    fcb = bool(c & 0x20)
                    if self.last_fcb is not None and fcb == self.last_fcb:
                        self.send(self.last)
                        continue
                    if self.pos == 0:
                        self.req_times.append(t_seen)
                    self.last = self.frames[self.pos]
                    self.pos = (self.pos + 1) % len(self.frames)
                    self.last_fcb = fcb
                    self.send(self.last)


def plug(target):
    tmp = TTY + ".plug.%d" % os.getpid()
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, TTY)


def measure(d, frames, paced, seconds):
    master, slave_fd = os.openpty()
    tty.setraw(master)
    tty.setraw(slave_fd)
    plug(os.ttyname(slave_fd))
    sl = Slave(master, frames, paced)
    sl.start()
    run_dir = tempfile.mkdtemp(prefix="run.", dir=d)
    cfg = os.path.join(d, "bench.toml")
    with open(cfg, "w") as f:
        f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s/state"\nwatchdog_s = 30\n\n'
                '[upload]\nenabled = false\n\n[[meter]]\nname = "m"\nprotocol = "mbus"\n'
                'source = "serial"\ndevice = "%s"\naddress = %d\ninterval_ms = 10\n'
                % (run_dir, run_dir, TTY, ADDRESS))
    pubs = []
    tap = subprocess.Popen([MP, "tap", "raw/", "--run-dir", run_dir], env=ENV,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)

    def rd():
        for line in tap.stdout:
            try:
                raw = json.loads(line)["envelope"]["raw"]
            except (ValueError, KeyError):
                continue
            if raw.get("last_of_poll"):
                pubs.append(int(raw["receive_mono_ns"]) / 1e9)
    threading.Thread(target=rd, daemon=True).start()
    time.sleep(0.3)
    sup = subprocess.Popen([MP, "run", "-c", cfg], env=ENV, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(d, "run.log"), "ab"))
    end = time.monotonic() + 20
    while len(sl.req_times) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    t0 = time.monotonic()
    time.sleep(seconds)
    sup.terminate()
    sup.wait()
    tap.kill()
    tap.wait()
    sl.stop = True
    sl.join(1)
    os.close(master)
    os.close(slave_fd)
    reqs = [t for t in sl.req_times if t >= t0]
    periods = [b - a for a, b in zip(reqs, reqs[1:])]
    inpoll = []
    for t in reqs:
        nxt = [p for p in pubs if p > t]
        if nxt:
            inpoll.append(nxt[0] - t)
    return periods, inpoll


def ms(x):
    return "%8.1f ms" % (x * 1000)


def main():
    reexec_in_harness()
    with open(FRAME) as f:
        emu = bytes(int(t, 16) for t in f.read().split())
    body = bytearray(emu[4:-2])
    body[1] = ADDRESS
    emu = long_frame(body[0], body[1], body[2], body[3:])
    one, two = split_in_two(emu)
    d = tempfile.mkdtemp(prefix="mpbm.", dir="/tmp")
    try:
        print("M-Bus at %d baud, %d bits/char (8E1); reply: EMU Professional 375 RSP_UD, "
              "%d bytes" % (BAUD, BITS, len(emu)))
        cases = [("1 telegram  %3d B" % len(emu), [emu]),
                 ("2 telegrams %3d+%d B" % (len(one), len(two)), [one, two])]
        for name, frames in cases:
            wire_bytes = sum(5 + len(f) for f in frames)
            theo = wire_bytes * BITS / BAUD + len(frames) * 11 / BAUD
            print("%s: theoretical minimum %s per poll (%d bytes on the wire + %d x 11-bit "
                  "turnaround) = %.2f polls/s" % (name, ms(theo), wire_bytes, len(frames),
                                                   1 / theo))
            for label, paced in (("pty, unpaced", False), ("2400 line, paced", True)):
                secs = SECONDS if paced else min(SECONDS, 3.0)
                periods, inpoll = measure(d, frames, paced, secs)
                if not periods:
                    print("  %-17s no complete polls measured (see %s/run.log)" % (label, d))
                    continue
                print("  %-17s acquire back to back: %s per poll (median of %d), in-poll %s, "
                      "%.2f polls/s%s"
                      % (label, ms(statistics.median(periods)), len(periods),
                         ms(statistics.median(inpoll)) if inpoll else "?",
                         1 / statistics.median(periods),
                         "" if not paced else "  (%.0f%% of the theoretical minimum)"
                         % (100 * statistics.median(periods) / theo)))
        print("(unpaced: 'per poll' shows the M-Bus loop's pace, not the line: acquire sleeps "
              "200 ms after each poll whatever interval_ms says; the in-poll time is the "
              "software floor)")
    finally:
        if os.path.islink(TTY):
            os.unlink(TTY)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
