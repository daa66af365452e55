#!/usr/bin/python3
"""100 KiB of random bytes and junk telegrams, then a good DSMR 5 telegram, sent over source =
"tcp": the raw frames acquire publishes are the ones a model framer (class Framer below) cuts
from the stream, nothing crashes, and the good telegram still becomes its reading.
Environment (ctest): MP_BIN_DIR, MP_SOURCE_DIR; one line per check, exit 1 on any failure.
"""
import base64
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import TcpPeer, dsmr_tcp_pipeline, read_data, wait_for, wait_tap_connected  # noqa: E402

ck = mptest.Checker()
check = ck.check


class Framer:
    """Python model of acquire/dsmr_framer.h, written from its documented rules: the oracle
    for what acquire must frame from a byte stream (popping after every feed)."""
    MAX_FRAME, MAX_END_LINE = 8192, 16

    def __init__(self):
        self.state, self.line_start, self.end_len, self.buf = "hunt", False, 0, bytearray()
        self.frames, self.discarded, self.oversize, self.truncated = [], 0, 0, 0

    def _start(self):
        self.buf, self.state, self.line_start = bytearray(b"/"), "body", False

    def _drop(self):
        self.discarded += len(self.buf)
        self.buf, self.state = bytearray(), "hunt"

    def _complete(self):
        self.frames.append(bytes(self.buf))
        self.buf, self.state = bytearray(), "hunt"

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            if self.state == "hunt":
                j = data.find(b"/", i)
                if j < 0:
                    self.discarded += n - i
                    return
                self.discarded += j - i
                i = j + 1
                self._start()
            elif self.state == "body":
                c = data[i]
                if self.line_start and c == 0x2F:
                    self.truncated += 1
                    self._drop()
                    i += 1
                    self._start()
                elif len(self.buf) >= self.MAX_FRAME:
                    self.oversize += 1
                    self._drop()
                elif self.line_start and c == 0x21:
                    self.buf.append(c)
                    i += 1
                    self.state, self.end_len = "end", 0
                else:
                    avail = min(n - i, self.MAX_FRAME - len(self.buf))
                    nl = data.find(b"\n", i, i + avail)
                    take = nl - i + 1 if nl >= 0 else avail
                    self.buf += data[i:i + take]
                    i += take
                    self.line_start = nl >= 0
            else:
                c = data[i]
                if not (c in b"\n\r \t" or c in b"0123456789abcdefABCDEF"):
                    self._complete()
                elif len(self.buf) >= self.MAX_FRAME:
                    self.oversize += 1
                    self._drop()
                elif c != 0x0A and self.end_len >= self.MAX_END_LINE:
                    self._complete()
                else:
                    self.buf.append(c)
                    i += 1
                    if c == 0x0A:
                        self._complete()
                    else:
                        self.end_len += 1


def noise_bytes(seed):
    """100 KiB: 50 KiB of random bytes, then 50 KiB of junk telegrams (random OBIS-looking
    lines; ends with a wrong CRC, a stray byte, an over-long end line, or none), each at
    least 440 bytes so a 4 KiB read never completes more telegrams than the framer queues."""
    rng = random.Random(seed)
    alpha = b"0123456789ABCDEF:.()*-kWhVm3 !"
    hexd = b"0123456789ABCDEF"

    def rand(a, lo, hi):
        return bytes(rng.choice(a) for _ in range(rng.randint(lo, hi)))
    out = bytearray(rng.randbytes(50 * 1024))
    end = len(out) + 50 * 1024
    while len(out) < end:
        t = b"/" + rand(alpha, 3, 12) + b"\r\n\r\n"
        for _ in range(rng.randint(20, 30)):
            t += rand(alpha, 20, 40) + (b"\r\n" if rng.random() < 0.9 else b"\n")
        kind = rng.randrange(4)
        if kind == 0:
            t += b"!" + rand(hexd, 4, 4) + b"\r\n"
        elif kind == 1:
            t += b"!" + rand(hexd, 0, 2) + b"Z\r\n"
        elif kind == 2:
            t += b"!" + rand(hexd, 17, 24) + b"\r\n"
        out += t
    return bytes(out[:end])


def test_tcp_noise():
    srv = TcpPeer()
    p = dsmr_tcp_pipeline("noisy", srv.port)
    noise = noise_bytes(7)
    good = read_data("v5.txt")
    stream = noise + b"\r\n" + good
    model = Framer()
    model.feed(stream)
    n_frames = len(model.frames)
    check(n_frames >= 20 and model.truncated >= 5 and model.oversize >= 3,
          "noise: the stream makes junk telegrams (model: %d frames, %d truncated, %d oversize)"
          % (n_frames, model.truncated, model.oversize))
    try:
        # raw/ comes from acquire, which the tap may join after process (ZeroMQ's reconnect
        # backoff): --backlog prints the frames acquire published before
        tap = p.start_tap(["reading/", "raw/", "health/process"],
                          extra_args=["--backlog", "1000"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None, "noise: acquire connects", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "noise: tap sees process' heartbeat")
        st0 = p.wait_running(20)
        pids0 = p.pids(st0)
        d0 = p.counters("acquire", st0).get("discarded_bytes_noisy", 0)
        for i in range(0, len(noise), 4096):
            c.sendall(noise[i:i + 4096])
        c.sendall(b"\r\n" + good)
        want, _ = mptest.decode_one(good)
        r = wait_for(lambda: [m for m in tap.messages("reading/noisy") if mptest.same_values(
            mptest.norm_reading_values(mptest.reading_of(m)), want)], 20)
        check(r, "noise: the good telegram after 100 KiB of noise is decoded",
              len(tap.messages("reading/")))
        p.wait_counter("acquire", "frames_noisy", lambda v: v >= n_frames, 20)
        st = p.fresh_status(["acquire", "process"])  # counters after the last frame
        ca, cp = p.counters("acquire", st), p.counters("process", st)
        want_c = {"frames_noisy": n_frames, "discarded_bytes_noisy": model.discarded,
                  "truncated_noisy": model.truncated, "oversize_noisy": model.oversize}
        check(all(ca.get(k) == v for k, v in want_c.items()),
              "noise: acquire counters are what the framer's rules give: %s" % want_c, ca)
        raws = [base64.b64decode(m["envelope"]["raw"]["data"]) for m in tap.messages("raw/noisy")]
        check(raws == model.frames, "noise: the %d raw frames on the bus are exactly the "
              "telegrams the framer's rules cut" % n_frames, (len(raws), n_frames))
        d = ca.get("discarded_bytes_noisy", 0)
        check(d > d0 and d > 50 * 1024, "noise: discarded_bytes grew (%d -> %d)" % (d0, d))
        check(d + sum(len(x) for x in raws) == len(stream),
              "noise: every byte is framed or counted discarded (%d bytes)" % len(stream))
        check(cp.get("frames_noisy") == n_frames and
              cp.get("readings_noisy", 0) + cp.get("errors_noisy", 0) == n_frames and
              cp.get("errors_noisy", 0) >= n_frames // 2,
              "noise: process decoded or counted an error for each of the %d frames" % n_frames,
              cp)
        check(p.pids(st) == pids0 and all(w["restarts"] == 0 and w["state"] == "running"
                                          for w in st["workers"]),
              "noise: no crash (same pids, no restart)", (pids0, st))
        check(mptest.no_crash_text("\n".join(p.log())), "noise: no crash text in the logs")
        warns = p.log_matching(r"^process: warn: noisy: ")
        keys = [w[len("process: warn: noisy: "):][:20] for w in warns]
        check(1 <= len(warns) < cp.get("errors_noisy", 0) and len(set(keys)) == len(keys),
              "noise: %d decode errors logged as %d lines, one per kind (rate-limited)"
              % (cp.get("errors_noisy", 0), len(warns)), warns[:10])
        # and the line keeps working
        c.sendall(read_data("fluvius_v171.txt"))
        want2, _ = mptest.decode_one(read_data("fluvius_v171.txt"))
        r = wait_for(lambda: [m for m in tap.messages("reading/noisy") if mptest.same_values(
            mptest.norm_reading_values(mptest.reading_of(m)), want2)], 5)
        check(r, "noise: the next telegram is decoded too")
    finally:
        p.stop()
        srv.close()


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_tcp_noise))
