"""mptest_serve: what the serve end-to-end scripts share (test_e2e_serve_*.py): a pipeline with
a simulated DSMR meter at RATE_HZ, a simulated relay "boiler" and [serve] on a free 127.0.0.1
port (Serve), an HTTP client (Http), a minimal RFC 6455 WebSocket client (WsClient), a tap on
reading/ and relay/ with wall arrival times (ServeTap), /metrics parsing and headless Chromium.
"""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import mptest
from mptest import ENV, Pipeline, free_port, status_json, wait_for, worker_pid

BUILD_DIR = os.environ.get("MP_BUILD_DIR") or os.path.dirname(mptest.BIN_DIR)
RATE_HZ = 20  # readings per second: fills a stuck client's socket buffers within seconds

# the relay is on at any net power below 100 kW: on from the first reading
BODY = """[[meter]]
name = "home"
source = "simulate"
rate_hz = %d
speed = 60

[upload]
enabled = false

[[relay]]
name = "boiler"
meter = "home"
on_below_w = 100000
off_above_w = 200000
on_delay_s = 0
off_delay_s = 0
min_on_s = 0
min_off_s = 0
max_switches_per_hour = 100
[relay.output]
type = "sim"

[serve]
enabled = true
listen = "127.0.0.1:%d"
"""


def close_enough(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))


class Http:
    def __init__(self, port):
        self.port = port

    def get(self, path, method="GET", headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        finally:
            c.close()

    def json(self, path):
        st, ct, body = self.get(path)
        return st, (json.loads(body) if body and "json" in ct else None)

    def raw(self, data, read=4096):
        """Sends raw bytes; returns the first bytes of the answer (b"" when closed)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            try:
                s.sendall(data)
            except OSError:
                pass
            try:
                return s.recv(read)
            except OSError:
                return b""
        finally:
            s.close()


class WsClient:
    """Minimal RFC 6455 client: handshake, unmasked server frames in, masked close out."""

    def __init__(self, port, rcvbuf=None, headers=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.sock.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n%s\r\n" % (port, key, extra)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = self.sock.recv(4096)
            if not d:
                break
            buf += d
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        self.status_line = head.split(b"\r\n")[0].decode(errors="replace")
        self.closed = False

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            d = self.sock.recv(65536)
            if not d:
                self.closed = True
                raise EOFError()
            self.buf += d

    def recv(self, timeout):
        """(opcode, payload, arrival wall ns, arrival mono ns); None on timeout/close."""
        deadline = time.monotonic() + timeout
        try:
            self._need(2, deadline)
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7f, 2
            if n == 126:
                self._need(4, deadline)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10, deadline)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._need(off + n, deadline)
        except (socket.timeout, EOFError, OSError):
            return None
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0f, payload, time.time_ns(), time.monotonic_ns()

    def messages(self, seconds):
        """Every text message for `seconds` as (json, wall ns, mono ns)."""
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            f = self.recv(end - time.monotonic())
            if f is None:
                if self.closed:
                    break
                continue
            if f[0] == 1:
                out.append((json.loads(f[1]), f[2], f[3]))
            elif f[0] == 8:
                self.closed = True
                break
        return out

    def send(self, opcode, payload=b""):
        """One masked frame (payload under 126 bytes) to the server."""
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask +
                          bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def wait_close(self, timeout):
        """Reads (answering pings) until the server's close frame: its (code, reason); None
        when the socket closed without one, or nothing came within `timeout` s (then
        self.closed is False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            f = self.recv(end - time.monotonic())
            if f is None:
                if self.closed:
                    return None
                continue
            if f[0] == 9:
                self.send(10, f[1])
            elif f[0] == 8:
                self.closed = True
                code = struct.unpack(">H", f[1][:2])[0] if len(f[1]) >= 2 else None
                try:
                    self.send(8, f[1][:2])  # the closing handshake's answer
                except OSError:
                    pass
                return code, f[1][2:].decode(errors="replace")
        return None

    def close(self):
        try:
            self.sock.sendall(b"\x88\x80" + os.urandom(4))
        except OSError:
            pass
        self.sock.close()


class ServeTap(mptest.Tap):
    """`meterpipe tap reading/ relay/ -c CFG` in the background; messages with their arrival
    (wall ns)."""

    def __init__(self, cfg):
        mptest.Tap.__init__(self, None, ["reading/", "relay/"], config=cfg, clock=time.time_ns,
                            keep_stderr=False)

    def readings(self):
        with self.lock:
            return [(t, m) for t, m in self.items if "reading" in m["envelope"]]

    def relays(self):
        with self.lock:
            return [(t, m) for t, m in self.items if "relay" in m["envelope"]]

    def by_seq(self, seq):
        for t, m in self.readings():
            if m["seq"] == seq:
                return m
        return None


def tap_values(m):
    out = {}
    for v in m["envelope"]["reading"].get("values", []):
        if "number" in v:
            out[v["name"]] = v["number"]
        else:
            out[v["name"]] = v.get("text", "")
    return out


def tap_net(m):
    v = tap_values(m)
    if "power_net_w" in v:
        return v["power_net_w"]
    return v.get("power_import_w", 0) - v.get("power_export_w", 0)


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def chromium(args, url, timeout=60):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return None, "chromium not installed"
    ud = tempfile.mkdtemp(prefix="mpsv-chrome.")
    try:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--log-level=3",
                            "--user-data-dir=" + ud] + args + [url],
                           capture_output=True, timeout=timeout, env=ENV)
        return r, r.stderr.decode(errors="replace")[-500:]
    finally:
        shutil.rmtree(ud, ignore_errors=True)


class Serve:
    """The pipeline of BODY (not started), its tap, an Http client on its serve port and the
    WebSocket clients a test opened (closed by stop())."""

    def __init__(self):
        self.port = free_port()
        self.p = Pipeline(BODY % (RATE_HZ, self.port), prefix="mpsv.")
        self.cfg = self.p.cfg
        self.h = Http(self.port)
        self.tap = None
        self.clients = []
        self.serve_pid = None

    def last(self):
        """/api/last/home when it answers 200, else None."""
        try:
            st, last = self.h.json("/api/last/home")
            return last if st == 200 else None
        except OSError:
            return None

    def all_up(self):
        """/api/status once every worker is up with counters, else None."""
        st, s = self.h.json("/api/status")
        ws = s["workers"] if s else {}
        return s if all(ws.get(w, {}).get("up") and ws[w]["counters"] for w in
                        ("acquire", "process", "actuate", "serve")) else None

    def start(self, check):
        """Starts tap and pipeline; checks that serve answers with a reading, runs under the
        supervisor and sees every worker; waits for 2 s of readings on the tap. False when
        serve never answers."""
        self.tap = ServeTap(self.cfg)
        self.p.start()
        if not check(wait_for(self.last, 15, 0.1) is not None,
                     "serve answers /api/last/home with a reading"):
            return False
        self.serve_pid = wait_for(lambda: worker_pid(self.cfg, "serve"), 15)
        check(self.serve_pid, "serve runs under the supervisor", status_json(cfg=self.cfg))
        check(wait_for(self.all_up, 10, 0.2), "every worker's heartbeat reaches serve")
        wait_for(lambda: len(self.tap.readings()) >= 2 * RATE_HZ, 20)
        return True

    def ws(self, rcvbuf=None):
        """A WebSocket client on /ws (closed by stop())."""
        c = WsClient(self.port, rcvbuf)
        self.clients.append(c)
        return c

    def stop(self, failed):
        """Closes the clients, stops tap and pipeline; prints the supervisor's last log lines
        when failed."""
        for c in self.clients:
            c.close()
        if self.tap:
            self.tap.stop()
        self.p.stop_process()
        if failed:
            print("--- supervisor log (last lines):\n" + "\n".join(self.p.log()[-30:]))
        self.p.stop()


def main(ck, scenario):
    """A script's main: scenario(serve) runs once a Serve is up (checked by Serve.start);
    the Serve is stopped after it, whatever happens. Returns the exit code."""
    def run():
        s = Serve()
        try:
            if s.start(ck.check):
                scenario(s)
        finally:
            s.stop(ck.failed)
    run.__name__ = scenario.__name__
    return mptest.script_main(ck, run, print_tb=True, time_inline=True)
