#!/usr/bin/python3
"""End to end over a serial line: a pty plays the P1 meter on /dev/ttyS0 (issue 3).

Runs inside tests/harness/serial_ns.sh (ctest does that for file names containing "serial"):
a private mount namespace with a tmpfs /dev where /dev/ttyS0 is a symlink to a pty slave, and
ptyshim.so in LD_PRELOAD (inherited by the meterpipe processes) so libserialport can drive a
pty, 7E1 included. By hand:

    PTYSHIM=build/lib/ptyshim.so MP_BIN_DIR=build/bin MP_SOURCE_DIR=. \
        tests/harness/serial_ns.sh tests/integration/test_e2e_serial_dsmr.py

Checks: `preset = "dsmr5"` (115200 8N1) and `preset = "dsmr3"` (9600 7E1, a 7-bit v3 telegram
without CRC) give readings on reading/<meter>; the device vanishing (USB unplug: symlink
removed, master closed) for 4 s and coming back as a new pty: readings resume within 2 s,
acquire does not spin meanwhile, logs the loss once, and is not restarted.
Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import fcntl
import os
import re
import struct
import sys
import termios
import threading
import time
import tty

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, read_data, wait_for, wait_tap_connected  # noqa: E402

ck = mptest.Checker()
check = ck.check
LINK = "/dev/ttyS0"


class MeterPty:
    """A pty pair; the master is the meter. plug() makes /dev/ttyS0 point at the slave
    (ln -s to a temp name + rename), unplug() removes the link and closes the master, so open
    slave descriptors hang up, as on a USB unplug."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.slave = os.ttyname(slave)
        tty.setraw(self.master)  # on Linux this sets the slave's line settings: raw
        os.close(slave)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def plug(self):
        mptest.plug_tty(self.slave, LINK)

    def unplug(self):
        self.stop_stream()
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
        """Writes all of data (blocking); False when the pty is closed or fails."""
        with self.lock:
            fd = self.master
            if fd < 0:
                return False
            view = memoryview(data)
            try:
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError:
                return False
        return True

    def stream(self, telegram, period):
        """Sends telegram every period seconds in a thread, as a meter does, until stopped."""
        def run():
            while not self._stop.is_set():
                self.send(telegram)
                self._stop.wait(period)
        self._stop.clear()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_stream(self):
        self._stop.set()
        if self._thread:
            self._thread.join(3)
            self._thread = None

    def unread(self):
        """Bytes the meter sent that the slave side has not read yet (FIONREAD on a second
        descriptor of the slave), None when that cannot be asked."""
        try:
            fd = os.open(self.slave, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            return None
        finally:
            os.close(fd)

    def line_settings(self):
        """termios of the slave as the kernel holds it (read through the master)."""
        with self.lock:
            return termios.tcgetattr(self.master) if self.master >= 0 else None


def serial_pipeline(meter, preset):
    return Pipeline('[[meter]]\nname = "%s"\nsource = "serial"\ndevice = "%s"\npreset = "%s"\n'
                    % (meter, LINK, preset), prefix="mpsd.")


def check_line_settings(what, pty, baud_const):
    t = pty.line_settings()
    if not check(t is not None, what + ": line settings readable"):
        return
    iflag, oflag, cflag, lflag, ispeed, ospeed = t[:6]
    check(ispeed == baud_const and ospeed == baud_const,
          "%s: the port runs at the preset's baud rate (read back from the tty)" % what,
          (ispeed, ospeed))
    check(not (lflag & (termios.ICANON | termios.ECHO | termios.ISIG)) and
          not (iflag & (termios.IXON | termios.IXOFF | termios.ICRNL | termios.ISTRIP)),
          "%s: raw, no echo, no XON/XOFF, no CR/LF mapping" % what, (oct(iflag), oct(lflag)))


# ---------------------------------------------------------------------------------------------
def test_dsmr5_and_unplug():
    meter = MeterPty()
    meter.plug()
    p = serial_pipeline("p1", "dsmr5")
    meter2 = None
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        opened = p.wait_log(r"^acquire: info: serial /dev/ttyS0 open", 20)
        want_open = "acquire: info: serial /dev/ttyS0 open (115200 8N1)"
        if not check(opened and opened[1] == want_open, "dsmr5: " + want_open,
                     p.log()[-6:]):
            return
        check_line_settings("dsmr5", meter, termios.B115200)
        check(wait_tap_connected(tap), "dsmr5: tap sees process' heartbeat")
        teles = [(n, read_data(n)) for n in ("v5.txt", "fluvius_v171.txt", "iskra_ie.txt",
                                             "v4_2.txt")]
        for _, t in teles:
            meter.send(t)
            time.sleep(0.3)
        tap.wait_count(len(teles), "reading/", 20)
        mptest.check_readings(ck, "dsmr5", tap.messages("reading/"), teles, "p1")
        st = p.wait_running(5)
        acq = p.worker("acquire", st)
        if not check(acq and (acq["pid"] or 0) > 0, "dsmr5: acquire runs", st):
            return
        pid = acq["pid"]

        # --- unplug for 4 s
        n_before = len(tap.messages("reading/"))
        cpu0 = mptest.cpu_seconds(pid)
        t_unplug = time.monotonic()
        meter.unplug()
        lost = p.wait_log(r"^acquire: warn: serial /dev/ttyS0 lost: ", 3, since=t_unplug)
        check(lost is not None, "unplug: acquire logs the loss",
              p.log_matching(r"^acquire", t_unplug))
        if lost:
            check(lost[0] - t_unplug <= 1.0, "unplug: noticed within 1 s (%.2f s)"
                  % (lost[0] - t_unplug))
        time.sleep(max(0.0, t_unplug + 4.0 - time.monotonic()))
        cpu1 = mptest.cpu_seconds(pid)
        used = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
        check(used is not None and used <= 0.15,
              "unplug: acquire used %s s of CPU in 4 s without its device (no spinning)"
              % (None if used is None else "%.2f" % used))
        loss_lines = p.log_matching(r"^acquire: (warn|error): serial /dev/ttyS0", t_unplug)
        check(len(loss_lines) == 1 and re.match(
            r"^acquire: warn: serial /dev/ttyS0 lost: .+; retrying every 1 s$", loss_lines[0]),
            "unplug: the loss is logged once (not once per retry)", loss_lines)
        check(len(tap.messages("reading/")) == n_before, "unplug: no reading while unplugged")

        # --- a new device appears (a new pty behind the same name); the meter sends 4/s
        meter2 = MeterPty()
        back_tele = read_data("v5_two_mbus.txt")
        want_back, _ = mptest.decode_one(back_tele)
        meter2.stream(back_tele, 0.25)
        t_plug = time.monotonic()
        meter2.plug()

        def first_back():
            for t, m in tap.timed("reading/"):
                if t >= t_plug and mptest.same_values(
                        mptest.norm_reading_values(mptest.reading_of(m)), want_back):
                    return t
            return None
        t_back = wait_for(first_back, 6)
        check(t_back is not None and t_back - t_plug <= 2.0,
              "replug: readings resume within 2 s of the device appearing (%s s)"
              % (None if t_back is None else "%.2f" % (t_back - t_plug)),
              p.log_matching(r"^(acquire|process)", t_unplug))
        again = p.wait_log(r"^acquire: info: serial /dev/ttyS0 open again after \d+ s$", 15,
                           since=t_plug)
        check(again is not None, "replug: acquire logs that the device is back",
              p.log_matching(r"^acquire", t_plug))
        wait_for(lambda: len([1 for t, _ in tap.timed("reading/") if t >= t_plug]) >= 4, 15)
        back = [m for t, m in tap.timed("reading/") if t >= t_plug]
        check(len(back) >= 4 and all(mptest.same_values(
            mptest.norm_reading_values(mptest.reading_of(m)), want_back) for m in back),
            "replug: the meter's telegrams keep coming as readings (%d)" % len(back))
        check(len(p.log_matching(r"^acquire: info: serial /dev/ttyS0 open again", t_plug)) == 1,
              "replug: the return is logged once")
        st = p.fresh_status(["acquire", "process"])  # counters after the frames above
        acq = p.worker("acquire", st)
        check(acq and acq["pid"] == pid and acq["restarts"] == 0,
              "replug: the supervisor did not restart acquire (same pid, 0 restarts)", acq)
        check(not p.log_matching(r"^supervisor: warn"), "no supervisor warnings",
              p.log_matching(r"^supervisor: warn"))
        ca, cp = p.counters("acquire", st), p.counters("process", st)
        check(ca.get("reconnects_p1") == 1, "replug: acquire counts 1 reconnect", ca)
        check(cp.get("errors_p1", 0) == 0 and cp.get("readings_p1") == cp.get("frames_p1"),
              "process: every frame became a reading, no errors", cp)
        check(mptest.no_crash_text("\n".join(p.log())), "no crash text in the logs")
    finally:
        meter.unplug()
        if meter2:
            meter2.unplug()
        p.stop()


def test_unplug_mid_telegram():
    """At 115200 baud a telegram takes ~80 ms of each second, at 9600 nearly all of it: an
    unplug usually cuts one. The cut one is lost; the first telegram of the new device is not."""
    meter = MeterPty()
    meter.plug()
    p = serial_pipeline("cut", "dsmr5")
    meter2 = None
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        if not check(p.wait_log(r"^acquire: info: serial /dev/ttyS0 open", 20) and
                     wait_tap_connected(tap), "cut: port open, tap connected", p.log()[-6:]):
            return
        meter.send(read_data("v5.txt"))
        if not check(tap.wait_count(1, "reading/", 15), "cut: first telegram read"):
            return
        part = read_data("fluvius_v171.txt")
        cut = part.index(b"1-0:32.7.0(") + 4  # mid-line
        meter.send(part[:cut])
        # acquire must have read the cut telegram before the unplug (a hang-up drops what
        # the slave did not read yet): the kernel delivers it to the slave side, then acquire
        # empties the slave's input queue
        time.sleep(0.3)
        wait_for(lambda: meter.unread() in (0, None), 10, 0.02)
        t_unplug = time.monotonic()
        meter.unplug()
        p.wait_log(r"^acquire: warn: serial /dev/ttyS0 lost", 15, since=t_unplug)
        time.sleep(0.5)
        meter2 = MeterPty()
        t_plug = time.monotonic()
        meter2.plug()
        if not check(p.wait_log(r"^acquire: info: serial /dev/ttyS0 open again", 15,
                                since=t_plug), "cut: the new device is opened"):
            return
        teles = [("iskra_ie.txt", read_data("iskra_ie.txt")),
                 ("v4_2.txt", read_data("v4_2.txt"))]
        for _, t in teles:
            meter2.send(t)
            time.sleep(0.3)
        tap.wait_count(3, "reading/", 20)
        time.sleep(0.3)
        later = [m for t, m in tap.timed("reading/") if t >= t_plug]
        mptest.check_readings(ck, "cut: after the replug", later, teles, "cut")
        st = p.fresh_status(["acquire", "process"])  # counters after the last frame
        ca, cp = p.counters("acquire", st), p.counters("process", st)
        check(cp.get("errors_cut", 0) == 0 and not p.log_matching(r"crc mismatch"),
              "cut: no decode error (the cut telegram is not glued to the next one)",
              (cp, p.log_matching(r"^process: warn")))
        check(ca.get("discarded_bytes_cut") == cut,
              "cut: the %d bytes of the cut telegram are counted in discarded_bytes" % cut, ca)
    finally:
        meter.unplug()
        if meter2:
            meter2.unplug()
        p.stop()


def test_dsmr3_7e1():
    tele = read_data("v3.txt")
    check(all(b < 0x80 for b in tele) and b"\r\n!\r\n" in tele,
          "dsmr3: v3.txt is 7-bit ASCII and has no CRC")
    meter = MeterPty()
    meter.plug()
    p = serial_pipeline("old", "dsmr3")
    try:
        tap = p.start_tap(["reading/", "health/process"])
        p.start()
        opened = p.wait_log(r"^acquire: info: serial /dev/ttyS0 open", 20)
        want_open = "acquire: info: serial /dev/ttyS0 open (9600 7E1)"
        if not check(opened and opened[1] == want_open, "dsmr3: " + want_open,
                     p.log()[-6:]):
            return
        check_line_settings("dsmr3", meter, termios.B9600)
        check(wait_tap_connected(tap), "dsmr3: tap sees process' heartbeat")
        teles = [("v3.txt", tele), ("v2_2.txt", read_data("v2_2.txt")), ("v3.txt", tele)]
        for _, t in teles:
            meter.send(t)
            time.sleep(0.4)
        tap.wait_count(len(teles), "reading/", 20)
        got = tap.messages("reading/")
        vals = [mptest.norm_reading_values(mptest.reading_of(m)) for m in got]
        wants = [mptest.decode_one(t)[0] for _, t in teles]
        check(len(vals) == 3 and all(mptest.same_values(v, w) for v, w in zip(vals, wants)),
              "dsmr3: 3 readings with the values `decode dsmr` gives (v3, v2.2, v3)",
              [mptest.diff_values(v, w) for v, w in zip(vals, wants)])
        names = mptest.values_by_name(mptest.reading_of(got[0])) if got else {}
        check(names.get("energy_import_t1_kwh") == 12345.678 and
              names.get("power_import_w") == 1190 and names.get("gas_m3") is not None,
              "dsmr3: v3 reading has energy_import_t1_kwh 12345.678, power_import_w 1190, "
              "gas_m3", names)
        cp = p.counters("process", p.fresh_status(["process"]))  # after the last frame
        check(cp.get("readings_old") == 3 and cp.get("errors_old", 0) == 0,
              "dsmr3: process counts 3 readings, 0 errors", cp)
        st = p.status()
        check(st and all(w["restarts"] == 0 for w in st["workers"]), "dsmr3: no restarts", st)
    finally:
        meter.unplug()
        p.stop()


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_dsmr5_and_unplug, test_unplug_mid_telegram,
                                test_dsmr3_7e1, serial=True))
