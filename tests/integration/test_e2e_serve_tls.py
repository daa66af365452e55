#!/usr/bin/python3
"""serve over HTTPS (issue 20): a test CA and a server certificate made here with openssl;
`check-config` refuses a key file others may read; requests with the test CA succeed, with
another CA they fail; plain HTTP on the HTTPS port gets no page; the session cookie is Secure;
a session unused for session_idle_s ends.
"""
import http.client
import os
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
from mptest_auth import USERS, AuthServe  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=1200)
check = ck.check


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], r.stderr[-400:]))


def make_ca(d, name):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=" + name)
    return key, pem


def make_server_cert(d, ca_key, ca_pem):
    key, csr, pem = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
            "-out", pem, "-days", "2", "-extfile", ext)
    return key, pem


def test_tls():
    a = AuthServe('tls_cert_file = "@DIR@/server.pem"\ntls_key_file = "@DIR@/server.key"\n'
                  'session_idle_s = 5\n')
    try:
        ca_key, ca_pem = make_ca(a.p.dir, "test-ca")
        _, other_pem = make_ca(a.p.dir, "other-ca")
        key, _ = make_server_cert(a.p.dir, ca_key, ca_pem)
        os.chmod(key, 0o644)
        r = mptest.run_cli(["check-config", a.cfg], text=True)
        check(r.returncode == 2 and "serve.tls_key_file" in r.stderr and "0644" in r.stderr and
              a.cfg + ":" in r.stderr, "check-config refuses a key file others may read",
              r.stderr)
        os.chmod(key, 0o600)
        r = mptest.run_cli(["check-config", a.cfg], text=True)
        check(r.returncode == 0, "with mode 0600 the config is fine", r.stderr)
        a.p.start()
        c = a.client(tls_ca=ca_pem)

        def up():
            try:
                return c.get("/login").status == 200
            except OSError:
                return False
        if not check(wait_for(up, 20, 0.2), "HTTPS with the test CA: the login page answers",
                     a.p.log()[-5:]):
            return
        try:
            a.client(tls_ca=other_pem).get("/login")
            check(False, "a client trusting another CA is refused")
        except ssl.SSLCertVerificationError as e:
            check(True, "a client trusting another CA is refused (%s)" % e.reason)
        plain = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        try:
            plain.request("GET", "/api/last")
            status = plain.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
        finally:
            plain.close()
        check(status not in (200, 303, 401), "plain HTTP on the HTTPS port gets no page (%s)"
              % status)
        r = c.login("olga", USERS["olga"][1])
        cookie = [x for x in r.cookies() if x.startswith("meterpipe_session=")]
        check(r.status == 303 and cookie and "; Secure" in cookie[0] and "HttpOnly" in cookie[0]
              and "SameSite=Strict" in cookie[0], "over HTTPS the session cookie is Secure, "
              "HttpOnly, SameSite=Strict", cookie or r.body)
        check(c.get("/api/last").status in (200, 404), "the session reads the API over HTTPS")
        # every request moves the idle limit, so nothing may be asked meanwhile: wait it out
        time.sleep(5.5)
        gone = c.get("/api/session").status
        check(gone == 401, "the session ends after session_idle_s = 5 without requests", gone)
        check(c.login("olga", USERS["olga"][1]).status == 303, "and a new login works")
    finally:
        a.stop(ck.failed)


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_tls, print_tb=True, time_inline=True))
