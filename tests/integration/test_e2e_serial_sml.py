#!/usr/bin/python3
"""SML meters end to end (issue 21): real frames (protocols/sml/tests/data) from a pty that
plays the IR head on /dev/ttyS0 at the `sml` preset (9600 8N1), from a TCP bridge, and the
simulated SML meter, through the supervisor to reading/<meter> with canonical names.

Runs inside tests/harness/serial_ns.sh (ctest does that for names containing "serial"); see
test_e2e_serial_dsmr.py for the pty and the unplug. Checks: the port opens at 9600 8N1;
frames with noise between them become readings with power_net_w, energy_import_kwh,
energy_export_kwh, equipment_id as `meterpipe decode sml` gives them; a locked meter (1.8.0
only) gives a reading without errors; a frame with a bad CRC is dropped and counted; after an
unplug and a new device the readings resume and acquire is not restarted; over TCP a frame
split across writes and a dropped connection; the simulated meter gives per-phase values; a
relay rule switches on an SML meter's export and off on its import.
Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import json
import os
import sys
import threading
import time
import tty

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, TcpPeer, wait_for, wait_tap_connected  # noqa: E402

ck = mptest.Checker()
check = ck.check
LINK = "/dev/ttyS0"
SML_DIR = os.path.join(mptest.SOURCE_DIR, "protocols", "sml", "tests", "data")


def frames(name):
    with open(os.path.join(SML_DIR, name)) as f:
        return [bytes.fromhex(line.strip()) for line in f if line.strip()]


def decode_sml(data):
    """`meterpipe decode sml -`: {name: value} of each frame."""
    r = mptest.run_cli(["decode", "sml", "-"], input=data)
    return [{v["name"]: v["value"] for v in json.loads(line)["values"]}
            for line in r.stdout.splitlines()]


class MeterPty:
    """A pty pair; the master is the IR head. plug() points /dev/ttyS0 at the slave, unplug()
    removes the link and closes the master (a USB unplug)."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.slave = os.ttyname(slave)
        tty.setraw(self.master)
        os.close(slave)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = None

    def plug(self):
        mptest.plug_tty(self.slave, LINK)

    def unplug(self):
        self.stop.set()
        if self.thread:
            self.thread.join(3)
        try:
            if os.readlink(LINK) == self.slave:
                os.unlink(LINK)
        except OSError:
            pass
        with self.lock:
            if self.master >= 0:
                os.close(self.master)
            self.master = -1

    def send(self, data):
        with self.lock:
            if self.master < 0:
                return False
            view = memoryview(data)
            while view:
                view = view[os.write(self.master, view):]
        return True

    def stream(self, data, period):
        def run():
            while not self.stop.is_set():
                self.send(data)
                self.stop.wait(period)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def readings_of(tap, meter, since=0.0):
    return [mptest.values_by_name(mptest.reading_of(m)) for t, m in tap.timed("reading/" + meter)
            if t >= since]


def same(got, want):
    return all(k in got and (got[k] == v if isinstance(v, str) else abs(got[k] - v) < 1e-9)
               for k, v in want.items())


# ---------------------------------------------------------------------------------------------
def test_serial_and_replug():
    dzg = frames("DZG_DVS-7420.2V.G2_mtr2_neg.hex")
    iskra = frames("ISKRA_MT631-D1A52-K0z-H01_with_PIN.hex")
    locked = frames("HOLLEY_DTZ541-BDBA_without_PIN.hex")
    meter = MeterPty()
    meter.plug()
    p = Pipeline('[[meter]]\nname = "ehz"\nprotocol = "sml"\nsource = "serial"\ndevice = "%s"\n'
                 'preset = "sml"\n' % LINK, prefix="mpsml.")
    meter2 = None
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        opened = p.wait_log(r"^acquire: info: serial /dev/ttyS0 open", 20)
        want_open = "acquire: info: serial /dev/ttyS0 open (9600 8N1)"
        if not check(opened and opened[1] == want_open, "serial: " + want_open, p.log()[-6:]):
            return
        check(wait_tap_connected(tap), "serial: tap sees process' heartbeat")
        bad = bytearray(iskra[1])
        bad[60] ^= 0x10
        sent = [dzg[0], b"\x00noise\xff\x1b\x1b", iskra[0], bytes(bad), locked[0], dzg[1]]
        for s in sent:
            meter.send(s)
            time.sleep(0.2)
        want = decode_sml(dzg[0] + iskra[0] + locked[0] + dzg[1])
        check(len(want) == 4 and want[0]["power_net_w"] == -105.5,
              "decode sml gives 4 frames, DZG power_net_w -105.5", want)
        tap.wait_count(4, "reading/ehz", 20)
        got = readings_of(tap, "ehz")
        check(len(got) == 4 and all(same(g, w) for g, w in zip(got, want)),
              "serial: 4 readings with the values decode sml gives (noise and the bad CRC "
              "frame skipped)", (got, want))
        if got:
            check(got[0].get("energy_export_kwh") == 1500.3213 and
                  got[0].get("equipment_id") == "0a01445a4700039e2053",
                  "serial: DZG reading has energy_export_kwh 1500.3213 and its equipment_id",
                  got[0])
        if len(got) >= 3:
            check(got[2].get("energy_import_kwh") == 2324 and "power_net_w" not in got[2],
                  "serial: the locked Holley gives energy_import_kwh 2324, no power", got[2])
        st = p.fresh_status(["acquire", "process"])  # counters after the last frame
        ca, cp = p.counters("acquire", st), p.counters("process", st)
        check(ca.get("crc_errors_ehz") == 1 and ca.get("discarded_bytes_ehz", 0) >= 9,
              "serial: acquire counts the bad-CRC frame and the noise", ca)
        check(cp.get("errors_ehz", 0) == 0 and cp.get("readings_ehz") == 4,
              "serial: process made 4 readings, no errors", cp)
        pid = (p.worker("acquire", p.status()) or {}).get("pid")

        # --- unplug, then a new device that sends a frame every 0.5 s
        t_unplug = time.monotonic()
        meter.unplug()
        check(p.wait_log(r"^acquire: warn: serial /dev/ttyS0 lost: ", 15, since=t_unplug),
              "unplug: acquire logs the loss")
        time.sleep(1.5)
        meter2 = MeterPty()
        meter2.stream(iskra[1], 0.5)
        t_plug = time.monotonic()
        meter2.plug()
        back = wait_for(lambda: readings_of(tap, "ehz", t_plug), 20)
        check(back and same(back[0], decode_sml(iskra[1])[0]),
              "replug: readings resume with the new device's frames", back)
        st = p.status()
        acq = p.worker("acquire", st)
        check(acq and acq["pid"] == pid and acq["restarts"] == 0,
              "replug: acquire was not restarted", acq)
        check(mptest.no_crash_text("\n".join(p.log())), "no crash text in the logs")
    finally:
        meter.unplug()
        if meter2:
            meter2.unplug()
        p.stop()


def test_tcp_and_simulate():
    srv = TcpPeer()
    dzg = frames("DZG_DVS-7420.2V.G2_mtr2_neg.hex")
    holley = frames("HOLLEY_DTZ541-BDBA_with_PIN.hex")
    p = Pipeline('[[meter]]\nname = "bridge"\nprotocol = "sml"\nsource = "tcp"\n'
                 'host = "127.0.0.1"\nport = %d\n\n[[meter]]\nname = "sim"\nprotocol = "sml"\n'
                 'source = "simulate"\nrate_hz = 4\nspeed = 60\n' % srv.port, prefix="mpsmlt.")
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        c1 = srv.accept(8)
        if not check(c1 is not None, "tcp: acquire connects to the bridge", p.log()[-5:]):
            return
        check(wait_tap_connected(tap), "tcp: tap sees process' heartbeat")
        f = dzg[0]
        c1.sendall(f[:50])
        time.sleep(0.3)
        c1.sendall(f[50:] + holley[0])
        tap.wait_count(2, "reading/bridge", 20)
        got = readings_of(tap, "bridge")
        want = decode_sml(dzg[0] + holley[0])
        check(len(got) == 2 and all(same(g, w) for g, w in zip(got, want)),
              "tcp: a frame split across writes and the next one become readings", (got, want))
        c1.sendall(holley[1][:70])  # cut off by the dropped connection
        time.sleep(0.2)
        c1.close()
        c2 = srv.accept(6)
        if not check(c2 is not None, "tcp: acquire reconnects"):
            return
        t2 = time.monotonic()
        c2.sendall(dzg[1])
        back = wait_for(lambda: readings_of(tap, "bridge", t2), 20)
        check(back and same(back[0], decode_sml(dzg[1])[0]),
              "tcp: after the reconnect the next frame is a reading (the cut one is lost)", back)

        sim = tap.wait_count(3, "reading/sim", 20)
        names = mptest.values_by_name(mptest.reading_of(sim[-1])) if sim else {}
        check(all(k in names for k in ("power_net_w", "power_l1_w", "power_l2_w", "power_l3_w",
                                       "voltage_l1_v", "current_l3_a", "frequency_hz",
                                       "energy_import_kwh", "energy_export_kwh",
                                       "equipment_id")),
              "simulate: readings carry the canonical names of a three-phase SML meter", names)
        if names:
            check(abs(names["power_net_w"] - names["power_l1_w"] - names["power_l2_w"] -
                      names["power_l3_w"]) <= 2, "simulate: power_net_w is the sum of the phases")
        cp = p.counters("process", p.fresh_status(["process"]))  # after the last frame
        check(cp.get("errors_bridge", 0) == 0 and cp.get("errors_sim", 0) == 0,
              "process: no decode errors", cp)
        check(mptest.no_crash_text("\n".join(p.log())), "no crash text in the logs")
    finally:
        srv.close()
        p.stop()


def test_relay_on_sml_export():
    """A relay rule reads power_net_w of an SML meter like any other: the DZG generator's
    frames (-105.5 W, exporting) switch it on; the Iskra's (+193 W) switch it off."""
    srv = TcpPeer()
    dzg = frames("DZG_DVS-7420.2V.G2_mtr2_neg.hex")[0]
    iskra = frames("ISKRA_MT631-D1A52-K0z-H01_with_PIN.hex")[0]
    p = Pipeline('[[meter]]\nname = "gen"\nprotocol = "sml"\nsource = "tcp"\n'
                 'host = "127.0.0.1"\nport = %d\n\n[[relay]]\nname = "heater"\nmeter = "gen"\n'
                 'on_below_w = -100\noff_above_w = 150\non_delay_s = 0\noff_delay_s = 0\n'
                 'min_on_s = 0\nmin_off_s = 0\nmax_switches_per_hour = 0\nfailsafe = "off"\n'
                 'stale_after_s = 30\n[relay.output]\ntype = "sim"\n' % srv.port,
                 prefix="mpsmlr.")
    try:
        tap = p.start_tap(["relay/", "reading/", "health/process", "health/actuate"])
        p.start()
        c = srv.accept(8)
        # relay events come from actuate: the tap must have joined it too (a heartbeat), or it
        # may miss the only "on" event (--backlog would not help: no later event follows it)
        if not check(c is not None and wait_tap_connected(tap) and
                     wait_for(lambda: tap.messages("health/actuate"), 20),
                     "relay: bridge connected, tap hears process and actuate"):
            return

        def state_after(frame, want):
            since = time.monotonic()

            def seen():
                c.sendall(frame)
                evs = [m.get("envelope", {}).get("relay", {})
                       for t, m in tap.timed("relay/heater") if t >= since]
                return [e for e in evs if bool(e.get("new_state", False)) == want]
            return wait_for(seen, 10, 0.5)
        on = state_after(dzg, True)
        check(on, "relay: SML power_net_w -105.5 W (export) switches the heater on",
              p.log_matching(r"^actuate"))
        off = state_after(iskra, False) if on else None
        check(off, "relay: SML power_net_w +193 W switches it off again",
              p.log_matching(r"^actuate"))
        check(mptest.no_crash_text("\n".join(p.log())), "no crash text in the logs")
    finally:
        srv.close()
        p.stop()


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_serial_and_replug, test_tcp_and_simulate,
                                test_relay_on_sml_export, serial=True))
