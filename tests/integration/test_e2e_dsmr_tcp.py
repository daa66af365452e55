#!/usr/bin/python3
"""DSMR over source = "tcp" (a P1 dongle or ser2net played by mptest.TcpPeer): the connection
drops and comes back (acquire logs both, counts the reconnect, readings resume); telegrams sent
while process is down become readings once it is back; encrypted P1 (DLMS,
sagemcom_t210_d_r.dlms) decodes with the right key, and with a wrong one gives no reading, one
counted error and one log line naming the GCM tag mismatch.
Environment (ctest): MP_BIN_DIR, MP_SOURCE_DIR; one line per check, exit 1 on any failure.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import (DSMR_TEST_KEY, TcpPeer, dsmr_tcp_pipeline, read_data,  # noqa: E402
                    wait_for, wait_tap_connected)

ck = mptest.Checker()
check = ck.check


def test_tcp_reconnect():
    srv = TcpPeer()
    p = dsmr_tcp_pipeline("dongle", srv.port)
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
        tap.wait_count(2, "reading/", 20)
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
        tap.wait_count(4, "reading/", 20)
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
        tap.wait_count(6, "reading/", 20)
        time.sleep(0.3)
        msgs = tap.messages("reading/")
        mptest.check_readings(ck, "tcp after a drop mid-telegram", msgs, sent, "dongle")
        p.wait_counter("acquire", "reconnects_dongle", lambda v: v >= 2, 20)
        st = p.fresh_status(["acquire", "process"])  # counters after the last frame
        ca, cp = p.counters("acquire", st), p.counters("process", st)
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


def test_process_restart():
    """No loss across restarts (docs/ARCHITECTURE.md, "The bus"): telegrams that arrive while
    process is down become readings once it is back (process replays from acquire's ring)."""
    srv = TcpPeer()
    p = dsmr_tcp_pipeline("meter", srv.port)
    t1, t2, t3 = (read_data(n) for n in ("v5.txt", "fluvius_v171.txt", "iskra_ie.txt"))
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None and wait_tap_connected(tap) and p.wait_running(5),
                     "restart: pipeline up, acquire connected", p.log()[-5:]):
            return
        c.sendall(t1)
        first = tap.wait_count(1, "reading/", 20)
        check(len(first) == 1, "restart: first telegram read")
        old = p.pids()["process"]
        os.kill(old, 9)
        c.sendall(t2)  # acquire publishes it while process is dead (restart delay 0.1 s)
        new = wait_for(lambda: [m for m in tap.messages("health/process")
                                if m["envelope"]["health"]["pid"] not in (0, old)], 20)
        if not check(new, "restart: a new process sends heartbeats"):
            return
        time.sleep(0.3)
        c.sendall(t3)
        inst = new[0]["envelope"]["instance_id"]
        later = lambda: [mptest.norm_reading_values(mptest.reading_of(m))  # noqa: E731
                         for m in tap.messages("reading/") if m["envelope"]["instance_id"] == inst]
        w2, _ = mptest.decode_one(t2)
        w3, _ = mptest.decode_one(t3)
        # both readings of the new process (the replayed one comes first): waited for
        wait_for(lambda: (lambda vs: any(mptest.same_values(v, w3) for v in vs) and
                          any(mptest.same_values(v, w2) for v in vs))(later()), 20)
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
    p = dsmr_tcp_pipeline("smarty", srv.port, 'key_file = "@DIR@/p1.key"\n')
    with open(p.path("p1.key"), "wb") as f:
        f.write(DSMR_TEST_KEY)
    frame = read_data("sagemcom_t210_d_r.dlms")
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c = srv.accept(8)
        if not check(c is not None, "encrypted: acquire connects", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "encrypted: tap sees process' heartbeat")
        check(p.wait_log(r"^acquire: info: meter smarty: reading encrypted P1 from "
                         r"tcp 127\.0\.0\.1:%d$" % srv.port, 2) is not None,
              "encrypted: acquire says it reads encrypted P1")
        c.sendall(b"\x00\x13noise" + frame)
        time.sleep(0.3)
        c.sendall(frame)
        msgs = tap.wait_count(2, "reading/", 20)
        rc, objs, err = mptest.decode_dsmr(frame, p.path("p1.key"))
        want = mptest.norm_decode_values(objs[0]) if objs else None
        plain, _ = mptest.decode_one(read_data("sagemcom_t210_d_r.txt"))
        check(rc == 0 and want is not None and mptest.same_values(want, plain),
              "encrypted: decode --key-file of the frame equals the plaintext telegram", err)
        got = [mptest.norm_reading_values(mptest.reading_of(m)) for m in msgs]
        check(len(got) == 2 and all(mptest.same_values(g, plain) for g in got),
              "encrypted: 2 readings with the values of the plaintext telegram",
              [mptest.diff_values(g, plain) for g in got])
        # counters travel in the heartbeat (every watchdog_s/3, at most 5 s): wait for them
        p.wait_counter("process", "readings_smarty", lambda v: v >= 2, 15)
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
    p = dsmr_tcp_pipeline("smarty", srv.port, 'key_file = "@DIR@/p1.key"\n')
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
        n = p.wait_counter("process", "errors_smarty", lambda v: v >= 1, 20)
        check(n == 1 and not tap.messages("reading/"),
              "wrong key: an error is counted, no reading", (n, len(tap.messages("reading/"))))
        lines = p.log_matching(r"^process: warn: smarty: ")
        check(len(lines) == 1 and "GCM tag mismatch" in lines[0],
              "wrong key: one log line naming the tag mismatch", lines)
    finally:
        p.stop()
        srv.close()


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_tcp_reconnect, test_process_restart,
                                test_tcp_encrypted, test_tcp_encrypted_wrong_key))
