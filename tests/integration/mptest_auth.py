"""mptest_auth: what the accounts end-to-end scripts share (test_e2e_serve_auth.py,
test_e2e_serve_tls.py, test_page_auth.py): a pipeline with a simulated meter, a sim relay
"boiler" that the rules keep off, [serve] with a users file made by `meterpipe user add`
(AuthServe), an HTTP(S) client that keeps cookies and can send from another 127.x address
(Client), and a minimal Chrome DevTools Protocol driver for headless Chromium (Browser).
"""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.parse

import mptest
from mptest import ENV, Pipeline, free_port, wait_for

# The rules keep "boiler" off (net power is never below -900 kW): a switch on is the override.
BODY = """[[meter]]
name = "home"
source = "simulate"
rate_hz = 5
speed = 60

[upload]
enabled = false

[[relay]]
name = "boiler"
meter = "home"
on_below_w = -900000
off_above_w = -800000
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
users_file = "@DIR@/users"
%s
"""

USERS = {"olga": ("operator", "Tall-Pine-Kettle-41"), "vic": ("viewer", "Quiet-Harbor-Lamp-77")}


def user_add(users_file, name, role, password):
    """`meterpipe user add NAME --role ROLE --users-file F` with the password on stdin."""
    return mptest.run_cli(["user", "add", name, "--role", role, "--users-file", users_file],
                          input=(password + "\n").encode(), timeout=60)


class Response:
    def __init__(self, r, body):
        self.status = r.status
        self.headers = r.getheaders()
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Client:
    """HTTP(S) to serve with a cookie jar (name -> value); source: the local address to
    send from (each 127.x address counts on its own for the login limit)."""

    def __init__(self, port, tls_ca=None, source="127.0.0.1", host="127.0.0.1"):
        self.port, self.tls_ca, self.source, self.host = port, tls_ca, source, host
        self.jar = {}

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.jar:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.jar.items())
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            c = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=ctx,
                                            source_address=(self.source, 0))
        else:
            c = http.client.HTTPConnection(self.host, self.port, timeout=30,
                                           source_address=(self.source, 0))
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            resp = Response(r, r.read())
        finally:
            c.close()
        for sc in resp.cookies():
            name, _, rest = sc.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in sc or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return resp

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def login(self, user, password):
        """GET /login (its form token), POST the form; the POST's Response."""
        page = self.get("/login")
        m = re.search(rb'name="csrf" value="([0-9a-f]+)"', page.body)
        token = m.group(1).decode() if m else ""
        body = urllib.parse.urlencode({"username": user, "password": password, "csrf": token})
        return self.request("POST", "/login", body,
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def csrf(self):
        s = self.get("/api/session").json() or {}
        return s.get("csrf") or ""

    def relay(self, name, body, csrf=None, headers=None):
        h = {"Content-Type": "application/json"}
        if csrf:
            h["X-CSRF-Token"] = csrf
        h.update(headers or {})
        return self.request("POST", "/api/relays/" + name, json.dumps(body), h)


class AuthServe:
    """The pipeline of BODY with both USERS added (not started): extra: more [serve] lines."""

    def __init__(self, extra=""):
        self.port = free_port()
        self.p = Pipeline(BODY % (self.port, extra), prefix="mpauth.")
        self.cfg = self.p.cfg
        self.users_file = self.p.path("users")
        self.added = [user_add(self.users_file, n, r, pw) for n, (r, pw) in USERS.items()]

    def client(self, **kw):
        return Client(self.port, **kw)

    def serve_up(self):
        """serve answers its login page."""
        try:
            return self.client().get("/login").status == 200
        except OSError:
            return False

    def stop(self, failed):
        self.p.stop_process()
        if failed:
            print("--- supervisor log (last lines):\n" + "\n".join(self.p.log()[-40:]))
        self.p.stop()


def secrets_in_log(lines, secrets):
    """The (secret, line) pairs where a secret shows up in a log line."""
    return [(s[:12] + "...", l) for s in secrets if s for l in lines if s in l]


# --- headless Chromium over the DevTools protocol ---------------------------------------

class _Ws:
    """A client WebSocket (masked frames out, text frames in) for the DevTools protocol."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (u.path, u.hostname, u.port,
                                                                    key)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = self.sock.recv(4096)
            if not d:
                raise EOFError("devtools closed the connection")
            buf += d
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("devtools handshake: %r" % head[:200])

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("devtools closed the connection")
            self.buf += d

    def recv(self):
        self._need(2)
        n, off = self.buf[1] & 0x7f, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return payload.decode(errors="replace")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Page:
    """One tab: navigate, evaluate JavaScript (promises awaited), wait for a condition."""

    def __init__(self, ws_url):
        self.ws = _Ws(ws_url)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def eval(self, expr):
        try:
            r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True,
                          returnByValue=True)
        except RuntimeError:  # the page navigated meanwhile
            return None
        if "exceptionDetails" in r:
            return None
        return r.get("result", {}).get("value")

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def wait(self, expr, timeout=20):
        """Polls a JavaScript expression until it is truthy; returns its value (or the last)."""
        return wait_for(lambda: self.eval(expr), timeout, 0.2)

    def close(self):
        self.ws.close()


class Browser:
    """Headless Chromium with remote debugging on a free port; new_page() opens tabs.
    None-like (ok False, why set) when chromium is not installed or does not start."""

    def __init__(self, extra_args=()):
        self.proc, self.port, self.why = None, None, ""
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            self.why = "chromium not installed"
            return
        self.ud = tempfile.mkdtemp(prefix="mpauth-chrome.")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--log-level=3", "--remote-debugging-port=0",
             "--user-data-dir=" + self.ud] + list(extra_args) + ["about:blank"],
            env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.ud, "DevToolsActivePort")

        def port():
            try:
                with open(port_file) as f:
                    return int(f.readline().strip() or 0)
            except (OSError, ValueError):
                return 0
        self.port = wait_for(port, 30, 0.1)
        if not self.port:
            self.why = "chromium did not open its DevTools port"

    @property
    def ok(self):
        return bool(self.port)

    def new_page(self, url="about:blank"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("PUT", "/json/new?" + urllib.parse.quote(url, safe=":/?=&"))
            info = json.loads(c.getresponse().read())
        finally:
            c.close()
        p = Page(info["webSocketDebuggerUrl"])
        p.call("Page.enable")
        p.call("Runtime.enable")
        return p

    def stop(self):
        if self.proc:
            mptest.kill_proc(self.proc)
        if getattr(self, "ud", None):
            shutil.rmtree(self.ud, ignore_errors=True)
