#!/usr/bin/python3
"""DSMR end to end (issue 3), decoder and local sources: `meterpipe decode dsmr` on the corpus
(plain, CRC errors, encrypted with the key file), then `meterpipe run` with source = "simulate"
and source = "file" (telegrams between noise and a corrupt one): what `meterpipe tap`, `status
--json` and the supervisor's stderr show equals what the decoder says.
Environment (ctest): MP_BIN_DIR, MP_SOURCE_DIR; one line per check, exit 1 on any failure.
"""
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
from mptest import DSMR_TEST_KEY, Pipeline, crc16, read_data  # noqa: E402

ck = mptest.Checker()
check = ck.check


def garbage(rng, n):
    """n noise bytes without '/' (which would start a telegram)."""
    return bytes(b for b in rng.randbytes(n * 2) if b != 0x2F)[:n]


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
            f.write(DSMR_TEST_KEY)
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


def test_simulate():
    p = Pipeline('[[meter]]\nname = "home"\nsource = "simulate"\n', prefix="mpd.")
    try:
        p.start()
        st = p.wait_running(10)
        if not check(st is not None, "simulate: every worker running", p.log()[-5:]):
            return
        check([w["name"] for w in st["workers"]] == ["acquire", "process", "upload", "history"],
              "simulate: workers acquire, process, upload, history",
              [w["name"] for w in st["workers"]])
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
        # counters travel in the heartbeat (every watchdog_s/3, at most 5 s): wait for them
        p.wait_counter("process", "readings_home", lambda v: v >= 5, 15)
        c = p.counters("process")
        check(c.get("errors_home", 0) == 0 and c.get("readings_home", 0) >= 5 and
              c.get("frames_home", 0) >= c.get("readings_home", 0),
              "process counters: readings_home >= 5, errors_home 0", c)
        # a tap started late: --backlog prints the earlier readings process still holds first
        late, rc = p.tap(["reading/", "--backlog", "1000"], count=3, timeout=12)
        check(rc == 0 and [m["seq"] for m in late] == [1, 2, 3],
              "tap --backlog 1000 started after 5 readings: readings 1, 2, 3 first",
              (rc, [m["seq"] for m in late]))
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
    # no history worker: one process less to start before acquire begins the replay, so the
    # tap (connecting with ZeroMQ's reconnect backoff) is listening before the first reading
    p = Pipeline('[[meter]]\nname = "replay"\nsource = "file"\nfile = "@DIR@/telegrams.bin"\n'
                 'rate_hz = 1\n\n[history]\nenabled = false\n', prefix="mpd.")
    path = p.path("telegrams.bin")
    with open(path, "wb") as f:
        f.write(blob)
    try:
        # the tap may connect after process published the first readings (ZeroMQ's reconnect
        # backoff, a slow start under ASan): --backlog prints those from process's ring first
        tap = p.start_tap(["reading/"], extra_args=["--backlog", "20"])
        p.start()
        done = p.wait_log(r"^acquire: info: meter replay: replayed 6 telegrams from " +
                          re.escape(path) + "$", 12)
        check(done is not None, "file: acquire logs that it replayed 6 telegrams",
              p.log_matching("acquire")[-3:])
        tap.wait_count(len(good), "reading/replay", 20)  # the last reading
        time.sleep(1.5)  # and nothing more may come
        msgs = tap.messages("reading/")
        got = mptest.check_readings(ck, "file", msgs, good, "replay")
        check([m["seq"] for m in got] == list(range(1, len(got) + 1)),
              "file: reading seq numbers 1..%d" % len(got), [m["seq"] for m in got])
        # counters from heartbeats sent after the last reading (they carry the counters within
        # 5 s of a change, later on a loaded machine)
        st = p.fresh_status(["acquire", "process"])
        ca, cp = p.counters("acquire", st), p.counters("process", st)
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


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_decode_cli, test_simulate, test_file))
