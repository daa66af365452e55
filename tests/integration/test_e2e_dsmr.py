#!/usr/bin/python3
"""End to end: P1 meter -> acquire -> process -> reading/<meter> on the bus (issue 3).

Runs `meterpipe run` with temporary configs and checks what `meterpipe tap`, `meterpipe status
--json` and the supervisor's stderr show, for the simulate, file and tcp sources (plain and
encrypted P1), plus the `meterpipe decode dsmr` command the readings are compared with.

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Prints one line per check and
`N passed, M failed`; exits 1 on any failure. Everything it starts is ended by pid.
"""
import base64
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, TcpPeer, crc16, read_data, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

KEY_TEXT = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n"  # SOURCES.md


def garbage(rng, n):
    """n noise bytes without '/' (which would start a telegram)."""
    return bytes(b for b in rng.randbytes(n * 2) if b != 0x2F)[:n]


# ---------------------------------------------------------------------------------------------
def test_simulate():
    p = Pipeline('[[meter]]\nname = "home"\nsource = "simulate"\n', prefix="mpd.")
    try:
        p.start()
        st = p.wait_running(10)
        if not check(st is not None, "simulate: every worker running", p.log()[-5:]):
            return
        check([w["name"] for w in st["workers"]] == ["acquire", "process", "upload"],
              "simulate: workers acquire, process, upload", [w["name"] for w in st["workers"]])
        msgs, rc = p.tap(["reading/"], count=5, timeout=12)
        check(rc == 0 and len(msgs) == 5, "tap reading/ --count 5: 5 messages, exit 0",
              (rc, len(msgs)))
        if len(msgs) < 2:
            return
        check(all(m["topic"] == "reading/home" and m["publisher"] == "process" for m in msgs),
              "every message is reading/home from process", [m["topic"] for m in msgs])
        seqs = [m["seq"] for m in msgs]
        check(seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq numbers consecutive", seqs)
        rs = [mptest.reading_of(m) for m in msgs]
        rt = [int(r["receive_time_ns"]) for r in rs]
        gaps = [round((b - a) / 1e9, 3) for a, b in zip(rt, rt[1:])]
        check(all(0.7 <= g <= 1.3 for g in gaps), "readings about every second (1 s +- 0.3)",
              gaps)
        mts = [int(r.get("meter_time_ns", 0)) for r in rs]
        check(all(m % 1000000000 == 0 for m in mts) and
              all(b - a == 1000000000 for a, b in zip(mts, mts[1:])),
              "meter time in whole seconds, +1 s per telegram", mts)
        check(all(abs(r_ - m_) < 2e9 for r_, m_ in zip(rt, mts)),
              "meter time within 2 s of receive time (speed 1)",
              [(r_ - m_) / 1e9 for r_, m_ in zip(rt, mts)])
        units = {"power_net_w": "W", "power_import_w": "W", "power_export_w": "W",
                 "energy_import_t1_kwh": "kWh", "energy_import_t2_kwh": "kWh",
                 "energy_export_t1_kwh": "kWh", "energy_export_t2_kwh": "kWh",
                 "energy_import_kwh": "kWh", "energy_export_kwh": "kWh",
                 "voltage_l1_v": "V", "voltage_l2_v": "V", "voltage_l3_v": "V",
                 "current_l1_a": "A", "power_l1_w": "W", "gas_m3": "m3"}
        for i, r in enumerate(rs):
            vals = {v["name"]: v for v in r["values"]}
            missing = [n for n, u in units.items()
                       if n not in vals or "number" not in vals[n] or vals[n].get("unit") != u]
            check(not missing, "reading %d: canonical values with units present" % (i + 1),
                  missing)
            if missing:
                continue
            num = {n: vals[n]["number"] for n in units}
            check(num["power_net_w"] == num["power_import_w"] - num["power_export_w"],
                  "reading %d: power_net_w %g == import %g - export %g"
                  % (i + 1, num["power_net_w"], num["power_import_w"], num["power_export_w"]))
            check(abs(num["energy_import_kwh"] - num["energy_import_t1_kwh"] -
                      num["energy_import_t2_kwh"]) < 1e-6 and
                  abs(num["energy_export_kwh"] - num["energy_export_t1_kwh"] -
                      num["energy_export_t2_kwh"]) < 1e-6,
                  "reading %d: energy totals are t1 + t2" % (i + 1))
            check(200 <= num["voltage_l1_v"] <= 260 and num["gas_m3"] > 0 and
                  num["energy_import_t1_kwh"] > 0,
                  "reading %d: plausible voltage_l1_v %g, gas_m3 %g"
                  % (i + 1, num["voltage_l1_v"], num["gas_m3"]))
            g = vals["gas_m3"]
            gt = int(g.get("time_ns", 0))
            check(g.get("native_id") == "0-1:24.2.1" and gt > 0 and
                  gt % (300 * 1000000000) == 0 and 0 <= mts[i] - gt < 300 * 1000000000,
                  "reading %d: gas_m3 (0-1:24.2.1) has its own time_ns: the last 5-minute "
                  "capture at or before the meter time" % (i + 1), (g, mts[i]))
            check(vals["power_net_w"].get("native_id") == "1-0:1.7.0-1-0:2.7.0" and
                  vals["energy_import_t1_kwh"].get("native_id") == "1-0:1.8.1" and
                  vals["voltage_l1_v"].get("native_id") == "1-0:32.7.0",
                  "reading %d: native ids are the OBIS codes" % (i + 1))
        e1 = [mptest.values_by_name(r)["energy_import_kwh"] for r in rs]
        check(all(b >= a for a, b in zip(e1, e1[1:])), "energy_import_kwh never decreases", e1)
        c = p.counters("process")
        check(c.get("errors_home", 0) == 0 and c.get("readings_home", 0) >= 5 and
              c.get("frames_home", 0) >= c.get("readings_home", 0),
              "process counters: readings_home >= 5, errors_home 0", c)
        check(mptest.no_crash_text("\n".join(p.log())), "no crash in the logs")
    finally:
        rc = p.stop()
        check(rc == 0, "simulate: supervisor stops with exit 0", rc)


# ---------------------------------------------------------------------------------------------
def test_file():
    rng = random.Random(3)
    corrupt_src = read_data("v4_2.txt")
    at = corrupt_src.index(b"1-0:1.8.1(") + 12  # a digit of the T1 import energy
    corrupt = corrupt_src[:at] + bytes([corrupt_src[at] ^ 0x01]) + corrupt_src[at + 1:]
    said = int(re.search(rb"!([0-9A-F]{4})\r\n$", corrupt).group(1), 16)
    computed = crc16(corrupt[:corrupt.rindex(b"!") + 1])
    good = [(n, read_data(n)) for n in ("v5.txt", "fluvius_v171.txt", "v3.txt", "iskra_ie.txt",
                                        "v5_two_mbus.txt")]
    blob = garbage(rng, 300)
    for i, (_, t) in enumerate(good):
        if i == 2:
            blob += garbage(rng, 150) + b"\r\n" + corrupt
        blob += b"\r\n" + garbage(rng, 200) + b"\r\n" + t
    blob += garbage(rng, 100)
    p = Pipeline('[[meter]]\nname = "replay"\nsource = "file"\nfile = "@DIR@/telegrams.bin"\n'
                 'rate_hz = 1\n', prefix="mpd.")
    path = p.path("telegrams.bin")
    with open(path, "wb") as f:
        f.write(blob)
    try:
        # the tap starts first: ZeroMQ connects it as soon as process binds
        tap = p.start_tap(["reading/"])
        time.sleep(0.3)
        p.start()
        done = p.wait_log(r"^acquire: info: meter replay: replayed 6 telegrams from " +
                          re.escape(path) + "$", 12)
        check(done is not None, "file: acquire logs that it replayed 6 telegrams",
              p.log_matching("acquire")[-3:])
        time.sleep(1.5)  # the last reading, and nothing more may come
        msgs = tap.messages("reading/")
        got = mptest.check_readings(ck, "file", msgs, good, "replay")
        check([m["seq"] for m in got] == list(range(1, len(got) + 1)),
              "file: reading seq numbers 1..%d" % len(got), [m["seq"] for m in got])
        ca, cp = p.counters("acquire"), p.counters("process")
        check(ca.get("frames_replay") == len(good) + 1,
              "file: acquire counts %d frames" % (len(good) + 1), ca)
        check(cp.get("frames_replay") == ca.get("frames_replay"),
              "file: process got every frame acquire published (the first one too)",
              (ca, cp))
        want = {"frames_replay": len(good) + 1, "readings_replay": len(good), "errors_replay": 1}
        check(all(cp.get(k) == v for k, v in want.items()),
              "file: process counts %s" % want, cp)
        crc_lines = p.log_matching(r"crc mismatch")
        want_line = ("process: warn: replay: crc mismatch: telegram says 0x%04X, computed 0x%04X"
                     % (said, computed))
        check(crc_lines == [want_line], "file: one log line: " + want_line, crc_lines)
        st = p.status()
        check(st and all(w["restarts"] == 0 and w["state"] == "running" for w in st["workers"]),
              "file: no worker restarted", st)
    finally:
        p.stop()


# ---------------------------------------------------------------------------------------------
def tcp_pipeline(meter, port, extra=""):
    return Pipeline('[[meter]]\nname = "%s"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\n%s'
                    % (meter, port, extra), prefix="mpd.")


def wait_tap_connected(tap, timeout=8):
    """True once the tap got a heartbeat of process (so it receives process' readings)."""
    return bool(wait_for(lambda: tap.messages("health/process"), timeout))


def test_tcp_reconnect():
    srv = TcpPeer()
    p = tcp_pipeline("dongle", srv.port)
    name = "127.0.0.1:%d" % srv.port
    t = {n: read_data(n) for n in ("v5.txt", "fluvius_v171.txt", "iskra_ie.txt", "v4_2.txt",
                                   "v5_eon_hu.txt", "v5_two_mbus.txt", "sagemcom_t210_d_r.txt")}
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c1 = srv.accept(8)
        if not check(c1 is not None, "tcp: acquire connects to the dongle", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "tcp: tap sees process' heartbeat")
        sent = []
        for n in ("v5.txt", "fluvius_v171.txt"):
            c1.sendall(t[n])
            sent.append((n, t[n]))
            time.sleep(0.3)
        tap.wait_count(2, "reading/", 5)
        mptest.check_readings(ck, "tcp first connection", tap.messages("reading/"), sent, "dongle")

        # --- the dongle drops the connection (between telegrams) and comes back
        c1.close()
        t_drop = time.monotonic()
        c2 = srv.accept(6)
        dt = time.monotonic() - t_drop
        if not check(c2 is not None and 0.8 <= dt <= 2.0,
                     "tcp: acquire reconnects after the 1 s backoff (%.2f s)" % dt):
            return
        for n in ("iskra_ie.txt", "v4_2.txt"):
            c2.sendall(t[n])
            sent.append((n, t[n]))
            time.sleep(0.3)
        tap.wait_count(4, "reading/", 5)
        mptest.check_readings(ck, "tcp after a reconnect", tap.messages("reading/"), sent, "dongle")
        lost = p.log_matching(r"^acquire: warn: tcp " + re.escape(name) + " lost")
        check(lost == ["acquire: warn: tcp %s lost: peer closed the connection; reconnecting "
                       "with backoff 1 s -> 30 s" % name],
              "tcp: the loss is logged once, naming the backoff", lost)
        back = p.log_matching(r"^acquire: info: tcp " + re.escape(name) + " connected again")
        check(back == ["acquire: info: tcp %s connected again after 1 s" % name],
              "tcp: the return is logged once", back)

        # --- dropped in the middle of a telegram: the next connection must still deliver
        # every telegram (the cut one is lost, nothing else)
        part = t["v5_eon_hu.txt"]
        cut = part.index(b"1-0:1.8.1(") + 5  # mid-line
        c2.sendall(part[:cut])
        time.sleep(0.3)
        c2.close()
        t_drop = time.monotonic()
        c3 = srv.accept(6)
        dt = time.monotonic() - t_drop
        if not check(c3 is not None and 1.7 <= dt <= 3.0,
                     "tcp: second drop within 30 s: backoff doubles to 2 s (%.2f s)" % dt):
            return
        for n in ("v5_two_mbus.txt", "sagemcom_t210_d_r.txt"):
            c3.sendall(t[n])
            sent.append((n, t[n]))
            time.sleep(0.3)
        tap.wait_count(6, "reading/", 5)
        time.sleep(0.3)
        msgs = tap.messages("reading/")
        mptest.check_readings(ck, "tcp after a drop mid-telegram", msgs, sent, "dongle")
        p.wait_counter("acquire", "reconnects_dongle", lambda v: v >= 2, 4)
        time.sleep(1.1)
        ca, cp = p.counters("acquire"), p.counters("process")
        check(ca.get("reconnects_dongle") == 2, "tcp: acquire counts 2 reconnects", ca)
        check(cp.get("readings_dongle") == 6 and cp.get("errors_dongle", 0) == 0,
              "tcp: process: 6 readings, no decode error (the cut telegram never reaches it)",
              (cp, p.log_matching(r"^process: warn")))
        check(ca.get("discarded_bytes_dongle") == cut,
              "tcp: the %d bytes of the cut telegram are counted in discarded_bytes" % cut, ca)
        st = p.status()
        check(st and all(w["restarts"] == 0 for w in st["workers"]), "tcp: no restarts", st)
    finally:
        p.stop()
        srv.close()


# ---------------------------------------------------------------------------------------------
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
    p = tcp_pipeline("noisy", srv.port)
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
        tap = p.start_tap(["reading/", "raw/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None, "noise: acquire connects", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "noise: tap sees process' heartbeat")
        st0 = p.wait_running(5)
        pids0 = p.pids(st0)
        d0 = p.counters("acquire", st0).get("discarded_bytes_noisy", 0)
        for i in range(0, len(noise), 4096):
            c.sendall(noise[i:i + 4096])
        c.sendall(b"\r\n" + good)
        want, _ = mptest.decode_one(good)
        r = wait_for(lambda: [m for m in tap.messages("reading/noisy") if mptest.same_values(
            mptest.norm_reading_values(mptest.reading_of(m)), want)], 8)
        check(r, "noise: the good telegram after 100 KiB of noise is decoded",
              len(tap.messages("reading/")))
        p.wait_counter("acquire", "frames_noisy", lambda v: v >= n_frames, 5)
        time.sleep(1.2)
        st = p.status()
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


def test_process_restart():
    """design.md, no loss across restarts: telegrams that arrive while process is down become
    readings once it is back (process subscribes with replay from acquire's ring)."""
    srv = TcpPeer()
    p = tcp_pipeline("meter", srv.port)
    t1, t2, t3 = (read_data(n) for n in ("v5.txt", "fluvius_v171.txt", "iskra_ie.txt"))
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None and wait_tap_connected(tap) and p.wait_running(5),
                     "restart: pipeline up, acquire connected", p.log()[-5:]):
            return
        c.sendall(t1)
        first = tap.wait_count(1, "reading/", 5)
        check(len(first) == 1, "restart: first telegram read")
        old = p.pids()["process"]
        os.kill(old, 9)
        c.sendall(t2)  # acquire publishes it while process is dead (restart delay 0.1 s)
        new = wait_for(lambda: [m for m in tap.messages("health/process")
                                if m["envelope"]["health"]["pid"] not in (0, old)], 5)
        if not check(new, "restart: a new process sends heartbeats"):
            return
        time.sleep(0.3)
        c.sendall(t3)
        inst = new[0]["envelope"]["instance_id"]
        later = lambda: [mptest.norm_reading_values(mptest.reading_of(m))  # noqa: E731
                         for m in tap.messages("reading/") if m["envelope"]["instance_id"] == inst]
        w2, _ = mptest.decode_one(t2)
        w3, _ = mptest.decode_one(t3)
        wait_for(lambda: any(mptest.same_values(v, w3) for v in later()), 5)
        time.sleep(0.5)
        got = later()
        check(any(mptest.same_values(v, w3) for v in got),
              "restart: the telegram sent after the restart becomes a reading")
        check(any(mptest.same_values(v, w2) for v in got),
              "restart: the telegram that arrived while process was down becomes a reading",
              "%d readings from the new process, %s" % (len(got), p.counters("process")))
        w = p.worker("process")
        check(w and w["restarts"] == 1, "restart: process restarted once", w)
    finally:
        p.stop()
        srv.close()


# ---------------------------------------------------------------------------------------------
def test_tcp_encrypted():
    srv = TcpPeer()
    p = tcp_pipeline("smarty", srv.port, 'key_file = "@DIR@/p1.key"\n')
    with open(p.path("p1.key"), "wb") as f:
        f.write(KEY_TEXT)
    frame = read_data("sagemcom_t210_d_r.dlms")
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None, "encrypted: acquire connects", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "encrypted: tap sees process' heartbeat")
        check(p.wait_log(r"^acquire: info: meter smarty: reading tcp 127\.0\.0\.1:%d "
                         r"\(encrypted P1\)$" % srv.port, 2) is not None,
              "encrypted: acquire says it reads encrypted P1")
        c.sendall(b"\x00\x13noise" + frame)
        time.sleep(0.3)
        c.sendall(frame)
        msgs = tap.wait_count(2, "reading/", 6)
        rc, objs, err = mptest.decode_dsmr(frame, p.path("p1.key"))
        want = mptest.norm_decode_values(objs[0]) if objs else None
        plain, _ = mptest.decode_one(read_data("sagemcom_t210_d_r.txt"))
        check(rc == 0 and want is not None and mptest.same_values(want, plain),
              "encrypted: decode --key-file of the frame equals the plaintext telegram", err)
        got = [mptest.norm_reading_values(mptest.reading_of(m)) for m in msgs]
        check(len(got) == 2 and all(mptest.same_values(g, plain) for g in got),
              "encrypted: 2 readings with the values of the plaintext telegram",
              [mptest.diff_values(g, plain) for g in got])
        time.sleep(1.2)
        cp = p.counters("process")
        check(cp.get("readings_smarty") == 2 and cp.get("errors_smarty", 0) == 0,
              "encrypted: process counts 2 readings, 0 errors", cp)
        check(not p.log_matching(r"key_file|cannot read"), "encrypted: no key error logged",
              p.log_matching(r"key"))
    finally:
        p.stop()
        srv.close()


def test_tcp_encrypted_wrong_key():
    srv = TcpPeer()
    p = tcp_pipeline("smarty", srv.port, 'key_file = "@DIR@/p1.key"\n')
    with open(p.path("p1.key"), "wb") as f:
        f.write(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB\nBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n")
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None, "wrong key: acquire connects"):
            return
        wait_tap_connected(tap)
        c.sendall(read_data("sagemcom_t210_d_r.dlms"))
        n = p.wait_counter("process", "errors_smarty", lambda v: v >= 1, 5)
        check(n == 1 and not tap.messages("reading/"),
              "wrong key: an error is counted, no reading", (n, len(tap.messages("reading/"))))
        lines = p.log_matching(r"^process: warn: smarty: ")
        check(len(lines) == 1 and "GCM tag mismatch" in lines[0],
              "wrong key: one log line naming the tag mismatch", lines)
    finally:
        p.stop()
        srv.close()


# ---------------------------------------------------------------------------------------------
def test_decode_cli():
    names = ["v2_2.txt", "v3.txt", "v4_2.txt", "v5.txt", "v5_two_mbus.txt", "v5_eon_hu.txt",
             "fluvius_v171.txt", "fluvius_v171_alt.txt", "iskra_ie.txt", "unpadded_crc.txt",
             "sagemcom_t210_d_r.txt"]
    allobjs = []
    for n in names:
        r = mptest.run_cli(["decode", "dsmr", os.path.join(mptest.DSMR_DIR, n)])
        lines = r.stdout.decode().splitlines()
        objs = []
        for l in lines:
            try:
                objs.append(json.loads(l))
            except ValueError:
                pass
        ok = (r.returncode == 0 and len(lines) == 1 and len(objs) == 1 and
              objs[0]["errors"] == [] and len(objs[0]["values"]) >= 5 and r.stderr == b"")
        check(ok, "decode dsmr %s: exit 0, one JSON line, no errors" % n,
              (r.returncode, r.stderr.decode()[:300], lines[:1]))
        allobjs += objs
        crc_expected = None if n in ("v2_2.txt", "v3.txt") else True
        check(objs and objs[0]["crc_ok"] is crc_expected,
              "decode dsmr %s: crc_ok is %s" % (n, crc_expected), objs and objs[0]["crc_ok"])
    # every telegram in one stream, with noise in between, from stdin
    blob = b"".join(b"junk\x00\xff\r\n" + read_data(n) for n in names)
    rc, objs, err = mptest.decode_dsmr(blob)
    check(rc == 0 and len(objs) == len(names) and
          all(mptest.same_values(mptest.norm_decode_values(a), mptest.norm_decode_values(b))
              for a, b in zip(objs, allobjs)),
          "decode dsmr - of all %d telegrams with noise: exit 0, same values" % len(names),
          (rc, len(objs), err[:300]))
    # a capture of 22 telegrams (more than the framer's queue of 16): every one is decoded
    many = b"".join(read_data(n) for n in names * 2)
    rc, objs, err = mptest.decode_dsmr(many)
    check(rc == 0 and len(objs) == 2 * len(names) and
          [o["header"] for o in objs] == [o["header"] for o in allobjs] * 2,
          "decode dsmr of %d telegrams in one input: %d JSON lines, in order"
          % (2 * len(names), 2 * len(names)), (rc, len(objs), err[:300]))
    # a corrupted telegram between two good ones
    v5 = read_data("v5.txt")
    at = v5.index(b"1-0:1.7.0(") + 12
    bad = v5[:at] + bytes([v5[at] ^ 0x02]) + v5[at + 1:]
    rc, objs, err = mptest.decode_dsmr(read_data("v4_2.txt") + bad + read_data("iskra_ie.txt"))
    said = int(re.search(rb"!([0-9A-F]{4})", bad).group(1), 16)
    got = crc16(bad[:bad.rindex(b"!") + 1])
    msg = "crc mismatch: telegram says 0x%04X, computed 0x%04X" % (said, got)
    check(rc == 1 and len(objs) == 3 and objs[0]["errors"] == [] and objs[2]["errors"] == []
          and objs[1]["crc_ok"] is False and objs[1]["errors"] == [msg],
          "decode dsmr with a corrupted telegram: exit 1, 3 JSON lines, the middle one: " + msg,
          (rc, [o["errors"] for o in objs]))
    check(err.strip().splitlines() == ["telegram 2: error: " + msg],
          "decode dsmr: stderr names telegram 2 and the mismatch", err)
    rc, objs, err = mptest.decode_dsmr(b"no telegram here\r\n")
    check(rc == 1 and objs == [] and "no telegram" in err,
          "decode dsmr of bytes without a telegram: exit 1, says so", (rc, err))
    rc, objs, err = mptest.decode_dsmr(read_data("v5.txt")[:400])
    check(rc == 1 and "incomplete telegram" in err, "decode dsmr of a cut telegram: exit 1",
          (rc, err))

    # encrypted P1
    tmp = tempfile.mkdtemp(prefix="mpd.", dir="/tmp")
    try:
        key = os.path.join(tmp, "good.key")
        with open(key, "wb") as f:
            f.write(KEY_TEXT)
        dlms = os.path.join(mptest.DSMR_DIR, "sagemcom_t210_d_r.dlms")
        r = mptest.run_cli(["decode", "dsmr", "--key-file", key, dlms])
        lines = r.stdout.decode().splitlines()
        objs = [json.loads(l) for l in lines]
        plain, pobj = mptest.decode_one(read_data("sagemcom_t210_d_r.txt"))
        check(r.returncode == 0 and len(objs) == 1 and objs[0]["errors"] == [] and
              mptest.same_values(mptest.norm_decode_values(objs[0]), plain) and
              objs[0]["header"] == pobj["header"] and objs[0]["meter_time"] == pobj["meter_time"],
              "decode dsmr --key-file (SOURCES.md keys) decodes the .dlms frame to the plaintext",
              (r.returncode, r.stderr.decode()[:300]))
        # the frame as hex text works too
        rc, objs, err = mptest.decode_dsmr(read_data("sagemcom_t210_d_r.dlms").hex().upper()
                                           .encode(), key)
        check(rc == 0 and len(objs) == 1 and
              mptest.same_values(mptest.norm_decode_values(objs[0]), plain),
              "decode dsmr --key-file of the frame as hex text", (rc, err))
        wrong = os.path.join(tmp, "wrong.key")
        with open(wrong, "wb") as f:
            f.write(b"000102030405060708090A0B0C0D0E0F\nBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n")
        r = mptest.run_cli(["decode", "dsmr", "--key-file", wrong, dlms])
        err = r.stderr.decode()
        check(r.returncode == 1 and err.strip().splitlines() ==
              ["frame 1: error: decrypt: authentication failed: GCM tag mismatch (wrong "
               "encryption/authentication key or damaged frame)"],
              "decode dsmr with a wrong key: exit 1, one line saying the key is wrong",
              (r.returncode, err))
        out = r.stdout.decode().splitlines()
        check(len(out) == 1 and json.loads(out[0])["values"] == [],
              "decode dsmr with a wrong key: one JSON line without values", out)
        missing = os.path.join(tmp, "nope.key")
        r = mptest.run_cli(["decode", "dsmr", "--key-file", missing, dlms])
        check(r.returncode == 2 and missing in r.stderr.decode() and r.stdout == b"",
              "decode dsmr with a missing key file: exit 2 naming it", (r.returncode, r.stderr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if not os.access(mptest.MP, os.X_OK):
        print("FAIL meterpipe not found at %s (set MP_BIN_DIR)" % mptest.MP)
        print("0 passed, 1 failed")
        return 1
    ck.run(test_decode_cli, test_simulate, test_file, test_tcp_reconnect, test_tcp_noise,
           test_process_restart, test_tcp_encrypted, test_tcp_encrypted_wrong_key)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
