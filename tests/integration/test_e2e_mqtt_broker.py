#!/usr/bin/python3
"""The mqtt worker when the broker misbehaves (issue 16), against a real mosquitto:

  - broker killed for 30 s and started again (empty: no persistence): the worker shows it
    in `meterpipe status` (info broker / broker_error, connect_failures), keeps reading the
    bus, keeps only the latest per topic meanwhile, retries every second while the port
    refuses connections (gauge retry_s = 1 after 30 s: the backoff that grows to 30 s is
    for refusals by the broker itself), and is back with status/discovery/state retained
    once the broker returns (the time it took is printed: goal <= 2 s);
  - broker frozen with SIGSTOP (QoS 1): the bus side keeps going and the worker's memory
    stays flat; states flow again after SIGCONT;
  - a broker with a password file and an ACL: a wrong password is a clear log line and a
    health entry, with no restart of the worker and retries spaced by the backoff; the right
    password works (a client with its own login sees the states);
  - TLS with a test CA (openssl): mqtts:// with ca_file connects; a certificate from another
    CA is refused with a clear error.

Environment (set by ctest): MP_BIN_DIR. Needs mosquitto, mosquitto_passwd, openssl and
python3-paho-mqtt. Figures (time back after the broker returned) are printed, not checked.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
import mqtt_broker  # noqa: E402
from mptest import note, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check
temp_dirs = []


def body(port, mqtt_extra="", rate_hz=5, scheme="mqtt"):
    return ('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = %g\n\n'
            '[upload]\nenabled = false\n\n'
            '[mqtt]\nenabled = true\nurl = "%s://127.0.0.1:%d"\n%s\n'
            % (rate_hz, scheme, port, mqtt_extra))


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mqtt_worker(p):
    return p.worker("mqtt") or {}


def mqtt_pid(p):
    pid = mqtt_worker(p).get("pid", 0)
    return pid if isinstance(pid, int) and pid > 0 else None


def test_outage():
    broker = mqtt_broker.Broker()
    broker.start()  # before a pipeline takes its port: start() may move it
    p = mptest.Pipeline(body(broker.port), prefix="mpmq.down.")
    try:
        p.start()
        check(p.wait_running(30) is not None, "pipeline running")
        check(wait_for(lambda: mqtt_broker.retained(broker.port, "meterpipe/#")
                       .get("meterpipe/status") == "online", 20), "online before the outage")
        broker.stop()
        t_down = time.monotonic()
        info = wait_for(lambda: (mqtt_worker(p).get("info", {}).get("broker", "")
                                 .startswith("down") and mqtt_worker(p)["info"]), 20)
        check(info, "status shows the broker down", mqtt_worker(p).get("info"))
        check(info and info.get("broker_error"), "status names the error",
              info and info.get("broker_error"))
        check(p.wait_log(r"mqtt: warn: (connection to|cannot connect to) mqtt://127\.0\.0\.1:%d"
                         % broker.port, 10), "a clear log line")
        r0 = p.counters("mqtt").get("readings", 0)
        wait_for(lambda: time.monotonic() - t_down > 30, 35)
        c = p.counters("mqtt")
        check(c.get("readings", 0) > r0, "the bus side keeps reading while the broker is away",
              (r0, c.get("readings")))
        g = mqtt_worker(p).get("gauges", {})
        check(g.get("outbox", 1e9) <= 100, "only the latest per topic waits (outbox %s)"
              % g.get("outbox"), g)
        check(c.get("dropped", 0) > 0, "replaced states are counted as dropped", c)
        check(mqtt_worker(p).get("restarts", -1) == 0, "the worker did not restart")
        check(g.get("retry_s") == 1 and c.get("connect_failures", 0) >= 10,
              "a refused port is retried every second, not after a grown backoff "
              "(retry_s %s, %s failed connects in 30 s)"
              % (g.get("retry_s"), c.get("connect_failures")), (g, c))
        broker.start()
        t_up = time.monotonic()
        sub = mqtt_broker.Client(broker.port, ["meterpipe/#", "homeassistant/#"])
        try:
            back = sub.wait(lambda: sub.last("meterpipe/status") == "online", 35)
            check(back, "online again after the broker returned (backoff capped at 30 s)")
            if back:
                t = min(m.time for m in sub.messages("meterpipe/status") if m.payload == "online")
                note("back %.1f s after the broker returned (down %.1f s)"
                     % (t - t_up, t_up - t_down))
        finally:
            sub.close()
        ret = wait_for(lambda: (lambda r: r if "meterpipe/home/state" in r and len(
            [t for t in r if t.startswith("homeassistant/")]) >= 20 else None)(
                mqtt_broker.retained(broker.port)), 20, 0.5)
        check(ret, "retained status, state and discovery configs restored on the new broker",
              sorted(mqtt_broker.retained(broker.port))[:5])
        info = wait_for(lambda: mqtt_worker(p).get("info", {}).get("broker", "")
                        .startswith("connected"), 20)
        check(info, "status shows connected again", mqtt_worker(p).get("info"))
    finally:
        p.stop()
        broker.remove()


def test_stall():
    broker = mqtt_broker.Broker()
    broker.start()  # before a pipeline takes its port: start() may move it
    p = mptest.Pipeline(body(broker.port, "qos = 1\nhomeassistant = false\n", rate_hz=10),
                        prefix="mpmq.stall.")
    try:
        p.start()
        check(p.wait_running(30) is not None, "pipeline running (qos 1, 10 readings/s)")
        sub = mqtt_broker.Client(broker.port, ["meterpipe/home/state"])
        sub.wait(lambda: len(sub.messages()) >= 20, 20)
        sub.close()
        pid = mqtt_pid(p)
        rss0 = rss_kb(pid) if pid else None
        r0 = p.counters("mqtt").get("readings", 0)
        broker.pause()
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 12, 15)
        c = p.counters("mqtt")
        rss1 = rss_kb(pid) if pid else None
        check(c.get("readings", 0) >= r0 + 50,
              "bus side not held up by a frozen broker (readings %d -> %d)"
              % (r0, c.get("readings", 0)))
        if os.environ.get("MP_SANITIZE") == "1":
            # AddressSanitizer's quarantine keeps freed memory resident: the figure is
            # checked in the normal build; say so instead of passing or failing here
            print("note mqtt RSS %s -> %s kB under AddressSanitizer: the memory check runs in "
                  "the normal build only" % (rss0, rss1), flush=True)
        else:
            check(rss0 and rss1 and rss1 - rss0 < 2048,
                  "worker memory flat while the broker is frozen (RSS %s -> %s kB)"
                  % (rss0, rss1))
        g = mqtt_worker(p).get("gauges", {})
        note("frozen 12 s: inflight %s, outbox %s, dropped %s"
             % (g.get("inflight"), g.get("outbox"), c.get("dropped")))
        broker.resume()
        sub = mqtt_broker.Client(broker.port, ["meterpipe/home/state"])
        t1 = time.monotonic()
        check(sub.wait(lambda: len(sub.messages(since=t1)) >= 5, 60),
              "states flow again after SIGCONT")
        sub.close()
        check(mqtt_worker(p).get("restarts", -1) == 0, "no restart of the worker")
    finally:
        broker.resume()
        p.stop()
        broker.remove()


def test_password():
    acl = ("user meterpipe\ntopic readwrite meterpipe/#\ntopic readwrite homeassistant/#\n\n"
           "user tester\ntopic read #\ntopic write homeassistant/status\n")
    broker = mqtt_broker.Broker(users={"meterpipe": "s3cret-right", "tester": "t"}, acl=acl)
    broker.start()  # before a pipeline takes its port: start() may move it
    d = tempfile.mkdtemp(prefix="mpmq.pw.", dir="/tmp")
    temp_dirs.append(d)
    pwfile = os.path.join(d, "mqtt.password")
    with open(pwfile, "w") as f:
        f.write("wrong-password\n")
    os.chmod(pwfile, 0o600)
    p = mptest.Pipeline(body(broker.port, 'username = "meterpipe"\npassword_file = "%s"\n'
                             % pwfile), prefix="mpmq.pw.")
    try:
        p.start()
        check(p.wait_running(30) is not None, "pipeline running")
        line = p.wait_log(r"mqtt: warn: cannot connect to .*refused the connection", 20)
        check(line, "wrong password: a clear log line", p.log()[-5:])
        note(line[1] if line else "")
        check(line and "wrong-password" not in line[1] and "s3cret" not in line[1],
              "the password is not in the log")
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 12, 15)
        w = mqtt_worker(p)
        check(w.get("restarts", -1) == 0, "no restart storm: the worker keeps running", w)
        fails = w.get("counters", {}).get("connect_failures", 0)
        check(1 <= fails <= 7, "retries spaced by the backoff (%d failed connects in ~15 s)"
              % fails, fails)
        check(w.get("gauges", {}).get("retry_s", 0) >= 4,
              "the backoff grows after refusals by the broker (retry_s %s)"
              % w.get("gauges", {}).get("retry_s"))
        check("refused" in w.get("info", {}).get("broker_error", ""),
              "status shows the refusal", w.get("info"))
        # the right password
        p.stop(remove=False)
        with open(pwfile, "w") as f:
            f.write("s3cret-right\n")
        p.clear_log()
        p.start()
        sub = mqtt_broker.Client(broker.port, ["meterpipe/#"], user="tester", password="t")
        try:
            check(sub.wait(lambda: sub.last("meterpipe/home/state") is not None, 30),
                  "right password: states reach a client with its own login")
            check(sub.last("meterpipe/status") == "online", "status online")
        finally:
            sub.close()
        check(not p.log_matching(r"mqtt: warn: cannot connect"), "no connect failure",
              p.log_matching(r"mqtt: warn"))
    finally:
        p.stop()
        broker.remove()


class Pki:
    """A test CA and a server certificate for 127.0.0.1, made with the openssl command."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="mpmq.pki.", dir="/tmp")
        temp_dirs.append(self.dir)
        self.ca, self.ca_key = self.path("ca.pem"), self.path("ca.key")
        self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                      "-subj", "/CN=%s" % name, "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def path(self, n):
        return os.path.join(self.dir, n)

    def openssl(self, args):
        subprocess.run(["openssl"] + args, check=True, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)

    def server(self):
        key, csr, crt, ext = (self.path("server" + s) for s in (".key", ".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self.openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"])
        self.openssl(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
        return crt, key


def test_tls():
    pki = Pki("meterpipe mqtt test CA")
    crt, key = pki.server()
    other = Pki("some other CA")
    broker = mqtt_broker.Broker(tls=(crt, key, pki.ca))
    broker.start()  # before a pipeline takes its port: start() may move it
    good = mptest.Pipeline(body(broker.port, 'ca_file = "%s"\n' % pki.ca, scheme="mqtts"),
                           prefix="mpmq.tls.")
    bad = mptest.Pipeline(body(broker.port, 'ca_file = "%s"\nbase_topic = "bad"\n' % other.ca,
                               scheme="mqtts"), prefix="mpmq.tlsbad.")
    try:
        good.start()
        sub = mqtt_broker.Client(broker.port, ["meterpipe/#", "bad/#"], ca=pki.ca)
        try:
            check(sub.wait(lambda: sub.last("meterpipe/home/state") is not None, 30),
                  "mqtts:// with the test CA: states arrive over TLS")
            bad.start()
            line = bad.wait_log(r"mqtt: warn: cannot connect to mqtts://", 30)
            check(line, "a certificate of another CA is refused with a clear log line")
            note(line[1] if line else "")
            check(line and ("certificate" in line[1] or "TLS" in line[1]),
                  "the log line says it is the certificate / TLS", line)
            check(sub.last("bad/status") is None, "nothing published by the refused client")
        finally:
            sub.close()
    finally:
        good.stop()
        bad.stop()
        broker.remove()


def main():
    try:
        ck.run(test_outage, test_stall, test_password, test_tls)
    finally:
        for d in temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
