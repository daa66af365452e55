"""mqtt_broker: a real mosquitto for the mqtt tests, and a paho-mqtt client that records.

    import mqtt_broker
    b = mqtt_broker.Broker()                     # own temp dir, config, free 127.0.0.1 port
    b.start()                                    # waits until it accepts connections
    c = mqtt_broker.Client(b.port, ["meterpipe/#", "homeassistant/#"])
    c.wait(lambda: c.last("meterpipe/status") == "online", 10)
    b.stop(); b.start()                          # same port, fresh (no persistence)
    c.close(); b.remove()

Broker(users={"name": "password"}, acl="...") adds a password file (made with
mosquitto_passwd) and an ACL; Broker(tls=(cert, key, ca)) makes the listener TLS.
Client keeps every message as Msg(time, topic, payload text, retain) in arrival order.
Needs Debian `mosquitto` (mosquitto, mosquitto_passwd) and `python3-paho-mqtt`.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import namedtuple

import paho.mqtt.client as paho

import mptest

Msg = namedtuple("Msg", "time topic payload retain")


def mosquitto_bin():
    for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", shutil.which("mosquitto") or ""):
        if p and os.path.exists(p):
            return p
    raise RuntimeError("mosquitto not found (Debian package `mosquitto`; scripts/setup --test)")


class Broker:
    def __init__(self, users=None, acl=None, tls=None, prefix="mpmqtt."):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.port = mptest.free_port()
        self.proc = None
        self.started = False  # accepted connections once (a restart keeps the port)
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        lines = ["listener %d 127.0.0.1" % self.port, "persistence false",
                 "log_dest file %s" % self.log_path, "log_type all"]
        if os.geteuid() == 0:
            # started as root mosquitto would switch to user `mosquitto`, who cannot read
            # this test's 0700 temp dirs (password file, keys)
            lines.append("user root")
        if users:
            pw = os.path.join(self.dir, "passwd")
            open(pw, "w").close()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True,
                               capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
            lines += ["allow_anonymous false", "password_file %s" % pw]
        else:
            lines += ["allow_anonymous true"]
        if acl:
            path = os.path.join(self.dir, "acl")
            with open(path, "w") as f:
                f.write(acl)
            lines += ["acl_file %s" % path]
        if tls:
            cert, key, ca = tls
            lines += ["certfile %s" % cert, "keyfile %s" % key, "cafile %s" % ca]
        self.tls = tls
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10):
        """Starts mosquitto and waits until it accepts connections. The port came from
        free_port(): another test may take it first, and then our mosquitto exits while a
        connection to the port reaches the other test's broker (whose meterpipe shares our
        client id and topics). So it counts only when our own log says it listens, and a
        mosquitto that exited is started again on a new port (before the first start only:
        a restart keeps its port, which its clients know)."""
        for attempt in range(5):
            self._launch()
            if mptest.wait_for(lambda: self._listening() or self.proc.poll() is not None,
                               timeout, 0.05) and self._listening():
                return self
            log = self.log()
            mptest.kill_proc(self.proc)
            if self.started or "Address already in use" not in log:
            # (a restart keeps its port: the pipelines' configs name it)
                raise RuntimeError("mosquitto did not listen on port %d: %s" % (self.port, log))
            self._set_port(mptest.free_port())
        raise RuntimeError("mosquitto found no free port: %s" % self.log())

    def _launch(self):
        try:
            os.unlink(self.log_path)  # the listen line below must be this start's
        except OSError:
            pass
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self not in mptest._live:
            mptest._live.append(self)

    def _listening(self):
        # mosquitto logs "Opening ... listen socket on port N." before it binds, and
        # "mosquitto version ... running" once every listener is open
        log = self.log()
        if self.proc.poll() is not None or ("listen socket on port %d." % self.port) not in log \
                or not re.search(r"mosquitto version \S+ running", log) or "Error:" in log:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        self.started = self.proc.poll() is None
        return self.started

    def _set_port(self, port):
        with open(self.conf) as f:
            text = f.read()
        with open(self.conf, "w") as f:
            f.write(text.replace("listener %d 127.0.0.1" % self.port, "listener %d 127.0.0.1" % port))
        self.port = port

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def pause(self):
        """SIGSTOP: the broker holds its connections but answers nothing."""
        if self.proc is not None and self.proc.poll() is None and self.proc.pid > 0:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc is not None and self.proc.poll() is None and self.proc.pid > 0:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self in mptest._live:
            mptest._live.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            mptest.kill_proc(self.proc)
        self.proc = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """A paho client on 127.0.0.1:port subscribed to `topics` (QoS 1), recording messages."""

    def __init__(self, port, topics, user=None, password=None, ca=None, client_id=""):
        self.lock = threading.Lock()
        self.msgs = []
        self.topics = list(topics)
        self.connected = threading.Event()
        self.c = paho.Client(client_id=client_id, clean_session=True)
        if user:
            self.c.username_pw_set(user, password)
        if ca:
            self.c.tls_set(ca_certs=ca)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("test client could not connect to port %d" % port)

    def _on_connect(self, client, _userdata, _flags, rc):
        if rc == 0:
            for t in self.topics:
                client.subscribe(t, qos=1)
            self.connected.set()

    def _on_message(self, _client, _userdata, m):
        with self.lock:
            self.msgs.append(Msg(time.monotonic(), m.topic,
                                 m.payload.decode("utf-8", errors="replace"), bool(m.retain)))

    def publish(self, topic, payload, retain=False, qos=1):
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def messages(self, prefix="", since=0.0):
        with self.lock:
            return [m for m in self.msgs if m.topic.startswith(prefix) and m.time >= since]

    def last(self, topic):
        """Payload of the newest message on exactly `topic` (None when none came)."""
        with self.lock:
            for m in reversed(self.msgs):
                if m.topic == topic:
                    return m.payload
        return None

    def wait(self, pred, timeout, interval=0.05):
        return mptest.wait_for(pred, timeout, interval)

    def close(self):
        try:
            self.c.loop_stop()
            self.c.disconnect()
        except Exception:  # noqa: BLE001 - best effort
            pass


def retained(port, prefix="#", timeout=1.5, **kw):
    """Every retained message the broker holds under the filter: {topic: payload}."""
    c = Client(port, [prefix], **kw)
    # retained messages arrive right after SUBACK; wait until no new ones come for a moment
    n = -1
    end = time.monotonic() + 10
    while time.monotonic() < end:
        time.sleep(timeout / 3)
        cur = len([m for m in c.messages() if m.retain])
        if cur == n and cur > 0:
            break
        n = cur
    c.close()
    return {m.topic: m.payload for m in c.messages() if m.retain}
