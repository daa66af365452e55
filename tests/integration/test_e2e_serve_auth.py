#!/usr/bin/python3
"""serve's accounts end to end (issue 20), with the real pipeline: users made by `meterpipe
user add` (weak passwords refused), login form and session cookie (flags), 401 without login
or with a wrong token, a viewer refused relay control (403), CSRF missing/wrong/cross-site
refused (403), an operator switching the relay (the result at once, in `meterpipe status`,
on the bus and pushed to another WebSocket client), API tokens, logout, the login limit per
address, `user passwd` and `user del` taking effect at once, a damaged or too open users file (serve stays up, read-only on 127.0.0.1), and no
password, hash, cookie or token in any log line.
"""
import os
import pty
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
from mptest_auth import USERS, AuthServe, secrets_in_log, user_add  # noqa: E402
from mptest_serve import WsClient  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=1200)
check = ck.check
OLGA, VIC = USERS["olga"][1], USERS["vic"][1]


def ws_with_cookie(port, cookie):
    """A WebSocket client on /ws sending `cookie`."""
    return WsClient(port, headers={"Cookie": cookie})


def add_on_terminal(users_file, name, password):
    """`meterpipe user add` on a pseudo-terminal, typing the password after each prompt;
    (exit code, everything the terminal showed)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([mptest.MP, "user", "add", name, "--users-file", users_file],
                         stdin=slave, stdout=slave, stderr=slave, env=mptest.ENV)
    os.close(slave)
    seen = b""

    def until(token):
        nonlocal seen
        end = time.monotonic() + 30
        while token not in seen and time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        return token in seen
    for prompt in (b"New password: ", b"Again: "):
        if until(prompt):
            os.write(master, password.encode() + b"\n")
    until(b"added")
    try:
        p.wait(60)
    finally:
        os.close(master)
    return p.returncode, seen.decode(errors="replace")


def relay_status(cfg):
    r = mptest.run_cli(["status", "-c", cfg], timeout=10, text=True)
    return r.stdout


def test_accounts():
    a = AuthServe()
    secrets = [OLGA, VIC]
    tap = None
    try:
        for r in a.added:
            check(r.returncode == 0, "meterpipe user add", r.stderr)
        check(oct(os.stat(a.users_file).st_mode & 0o777) == "0o600", "the users file is 0600")
        text = open(a.users_file).read()
        secrets += [l.split(":")[2] for l in text.splitlines() if l and not l.startswith("#")]
        check("$argon2id$" in text and OLGA not in text, "it holds Argon2id hashes, no password")
        rc, shown = add_on_terminal(a.users_file, "tina", "Green-Valley-Road-55")
        check(rc == 0 and "New password: " in shown and "Again: " in shown and
              "Green-Valley" not in shown, "on a terminal the password is asked twice, never "
              "echoed", shown)
        secrets.append("Green-Valley-Road-55")
        weak = user_add(a.users_file, "eve", "viewer", "eve12345")
        check(weak.returncode == 2 and b"password refused" in weak.stderr,
              "a weak password is refused clearly", weak.stderr)
        tok = mptest.run_cli(["user", "token", "olga", "--users-file", a.users_file], timeout=30,
                             text=True)
        token = tok.stdout.strip()
        check(tok.returncode == 0 and token.startswith("mpt_") and token not in
              open(a.users_file).read(), "meterpipe user token prints a token, stores its hash",
              tok.stderr)
        vtok = mptest.run_cli(["user", "token", "vic", "--users-file", a.users_file],
                              timeout=30, text=True).stdout.strip()
        secrets += [token, vtok]

        lan = a.p.path("lan.toml")
        with open(a.cfg) as f, open(lan, "w") as g:
            g.write(f.read().replace('listen = "127.0.0.1:', 'listen = "0.0.0.0:').replace(
                'users_file = ', '# users_file = '))
        r = mptest.run_cli(["check-config", lan], text=True)
        check(r.returncode == 2 and "serve.listen" in r.stderr and "meterpipe user add" in
              r.stderr, "listening beyond 127.0.0.1 without a users file is refused, saying "
              "how to make one", r.stderr)
        tap = mptest.Tap(None, ["relay/", "health/actuate"], config=a.cfg)
        a.p.start()
        if not check(wait_for(a.serve_up, 20, 0.2), "serve answers its login page"):
            return
        anon = a.client()
        check(anon.get("/api/last").status == 401, "no cookie: /api/last is 401")
        check(anon.get("/").status == 303 and anon.get("/").header("Location") == "/login",
              "no cookie: the page sends to /login")
        check(anon.get("/metrics").status == 401, "no cookie: /metrics is 401")
        bad = anon.get("/api/status", {"Authorization": "Bearer mpt_" + "0" * 64})
        check(bad.status == 401, "a wrong token is 401")
        check(a.client().relay("boiler", {"mode": "on"}).status == 401, "no cookie: relay POST is 401")

        # --- operator logs in
        op = a.client()
        r = op.login("olga", OLGA)
        cookie = [c for c in r.cookies() if c.startswith("meterpipe_session=")]
        check(r.status == 303 and cookie, "operator logs in (303 and a session cookie)", r.body)
        if cookie:
            c = cookie[0]
            secrets.append(op.jar.get("meterpipe_session", ""))
            check("HttpOnly" in c and "SameSite=Strict" in c and "Path=/" in c and
                  "Secure" not in c, "the cookie is HttpOnly, SameSite=Strict (no Secure on "
                  "plain HTTP)", c)
        check(op.get("/api/last").status in (200,), "with the cookie /api/last answers")
        sess = op.get("/api/session").json() or {}
        check(sess.get("user") == "olga" and sess.get("role") == "operator" and
              sess.get("can_control"), "/api/session says olga, operator", sess)
        csrf = sess.get("csrf", "")
        secrets.append(csrf)

        # --- viewer
        vw = a.client()
        check(vw.login("vic", VIC).status == 303, "viewer logs in")
        secrets.append(vw.jar.get("meterpipe_session", ""))
        check(vw.get("/api/relays").status == 200, "viewer reads /api/relays")
        vr = vw.relay("boiler", {"mode": "on"}, vw.csrf())
        check(vr.status == 403 and b"viewer" in vr.body, "viewer's relay POST is 403", vr.body)
        vt = a.client().relay("boiler", {"mode": "on"}, headers={"Authorization": "Bearer " + vtok})
        check(vt.status == 403, "viewer's token: relay POST is 403", vt.body)
        ve = vw.get("/api/export/grid.csv?from=2026-01-01&to=2026-01-02")
        check(ve.status == 403 and b"operator" in ve.body, "viewer's data export is 403", ve.body)
        oe = op.get("/api/export/grid.csv?from=2026-01-01&to=2026-01-02")
        check(oe.status != 403 and oe.status != 401, "the operator may export data "
              "(status %d)" % oe.status, oe.body)

        # --- CSRF
        r = op.relay("boiler", {"mode": "on"})
        check(r.status == 403 and b"CSRF" in r.body, "operator POST without X-CSRF-Token: 403", r.body)
        r = op.relay("boiler", {"mode": "on"}, "0" * 64)
        check(r.status == 403, "operator POST with a wrong CSRF token: 403", r.body)
        r = op.relay("boiler", {"mode": "on"}, csrf, {"Origin": "http://evil.example"})
        check(r.status == 403, "cross-site POST (foreign Origin) even with the token: 403", r.body)
        form = op.request("POST", "/api/relays/boiler", "mode=on&for_s=60",
                          {"Content-Type": "application/x-www-form-urlencoded",
                           "Origin": "http://evil.example"})
        check(form.status == 403, "cross-site form POST without the token: 403", form.body)
        before = relay_status(a.cfg)
        check(re.search(r"^boiler\s+off\s+\S+\s+-", before, re.M), "nothing switched so far "
              "(`meterpipe status`: boiler off, no override)", before)

        # --- operator switches, another page sees it
        ws = ws_with_cookie(a.port, "meterpipe_session=" + op.jar.get("meterpipe_session", ""))
        check("101" in ws.status_line, "a logged-in WebSocket client connects", ws.status_line)
        anon_ws = WsClient(a.port)
        check("101" not in anon_ws.status_line, "a WebSocket without login is refused",
              anon_ws.status_line)
        anon_ws.close()
        check(wait_for(lambda: tap.messages("health/actuate"), 15),
              "the tap hears actuate (so it will see the switch)")
        t0 = time.monotonic()
        r = op.relay("boiler", {"mode": "on", "for_s": 600}, csrf,
                     {"Origin": "http://127.0.0.1:%d" % a.port})
        j = r.json() or {}
        st = j.get("status") or {}
        check(r.status == 200 and j.get("ok") and st.get("on") is True and
              st.get("override") == "on" and 590 <= st.get("override_left_s", 0) <= 600,
              "operator switches boiler on for 10 min: new state and expiry in the answer", r.body)
        msgs = []

        def pushed():
            msgs.extend(m for m, _, _ in ws.messages(0.5))
            return [m for m in msgs if m.get("type") == "relay_control"]
        got = wait_for(pushed, 10)
        check(got and got[0]["relay"] == "boiler" and got[0]["by"] == "olga" and
              got[0]["status"]["override"] == "on", "the switch is pushed to another page's "
              "WebSocket", got or msgs[-3:])
        check(wait_for(lambda: [m for m in tap.messages("relay/")
                                if m["envelope"]["relay"].get("new_state")], 10),
              "the relay-on event is on the bus",
              (len(tap.messages()), tap.proc.poll(), tap.err[-300:], tap.bad[-2:]))
        line = re.compile(r"^boiler\s+on\s+\S+\s+on \((\d+) s left\)", re.M)
        out = wait_for(lambda: line.search(relay_status(a.cfg)), 10)
        check(out and 590 <= int(out.group(1)) <= 600, "`meterpipe status` shows boiler on, "
              "override on with 10 min left", relay_status(a.cfg))
        note_t = time.monotonic() - t0
        mptest.note("switch answered and pushed within %.1f s" % note_t)
        r = op.relay("nope", {"mode": "on"}, csrf)
        check(r.status == 404, "an unknown relay is 404", r.body)
        r = op.relay("boiler", {"mode": "auto", "for_s": 60}, csrf)
        check(r.status == 400, "auto with a duration is 400", r.body)
        r = a.client().relay("boiler", {"mode": "auto"},
                             headers={"Authorization": "Bearer " + token})
        check(r.status == 200 and (r.json() or {}).get("status", {}).get("override") in
              ("none", "auto"), "operator's token switches back to auto without CSRF", r.body)
        check(a.client().get("/api/status", {"Authorization": "Bearer " + token}).status == 200,
              "a token reads the API")
        m = a.client().get("/metrics", {"Authorization": "Bearer " + vtok})
        check(m.status == 200 and b"meterpipe_" in m.body, "Prometheus reads /metrics with a "
              "viewer's token")

        # --- logout
        lo = op.request("POST", "/logout", "csrf=" + csrf,
                        {"Content-Type": "application/x-www-form-urlencoded"})
        check(lo.status == 303 and lo.header("Location") == "/login", "logout", lo.body)
        check(op.get("/api/last").status == 401, "after logout the session is gone")

        # --- login limit: 20 wrong passwords from 127.0.0.3
        bad = a.client(source="127.0.0.3")
        codes = [bad.login("olga", "wrong-%d-password" % i).status for i in range(20)]
        check(codes[:5] == [401] * 5 and 429 in codes[5:], "5 wrong passwords cost nothing, "
              "then 429 (slowed)", codes)
        r = bad.login("olga", OLGA)
        check(r.status == 429 and r.header("Retry-After"), "after 20 the address is refused "
              "for a while, even with the right password", (r.status, r.header("Retry-After")))
        other = a.client(source="127.0.0.4")
        check(other.login("olga", OLGA).status == 303, "another address is unaffected")

        # --- passwd and del take effect at once, without a restart
        check(vw.get("/api/last").status == 200, "the viewer's session still works")
        pw = mptest.run_cli(["user", "passwd", "vic", "--users-file", a.users_file],
                            input=b"Another-Quiet-Harbor-88\n", timeout=60)
        check(pw.returncode == 0, "meterpipe user passwd vic", pw.stderr)
        secrets.append("Another-Quiet-Harbor-88")
        check(vw.get("/api/last").status == 401, "a new password ends the viewer's session")
        check(a.client().get("/api/last", {"Authorization": "Bearer " + vtok}).status == 200,
              "the viewer's token still works")
        dl = mptest.run_cli(["user", "del", "vic", "--users-file", a.users_file], timeout=30)
        check(dl.returncode == 0, "meterpipe user del vic", dl.stderr)
        check(a.client().get("/api/last", {"Authorization": "Bearer " + vtok}).status == 401,
              "a deleted user's token is refused")

        # --- a damaged users file: serve stays up, read-only on 127.0.0.1
        with open(a.users_file, "a") as f:
            f.write("mallory:admin\n")
        lines = len(open(a.users_file).read().splitlines())
        want = "%s:%d:" % (a.users_file, lines)
        # serve looks at the file when a request comes (a stat each)
        check(a.client().get("/api/last").status == 200, "serve keeps running, read-only")
        check(wait_for(lambda: a.p.log_matching("accounts: " + re.escape(want)), 10),
              "a damaged line is logged as FILE:LINE", a.p.log()[-5:])
        r = other.relay("boiler", {"mode": "on"}, other.csrf())
        check(r.status == 403, "and refuses relay control", r.body)
        text = open(a.users_file).read().replace("mallory:admin\n", "")
        with open(a.users_file, "w") as f:
            f.write(text)
        check(wait_for(lambda: a.client().get("/api/last").status == 401, 10),
              "fixed: accounts are back without a restart")
        os.chmod(a.users_file, 0o644)
        check(a.client().get("/api/last").status == 200 and
              wait_for(lambda: a.p.log_matching("mode 0644 lets others read"), 10),
              "a users file others can read is refused (read-only page, logged)", a.p.log()[-3:])
        os.chmod(a.users_file, 0o600)
        check(a.p.log_matching("login failed for user olga from 127.0.0.3"),
              "failed logins are logged with user and address")
        check(a.p.proc.poll() is None and wait_for(lambda: a.client().get("/login").status
                                                   == 200, 5), "serve never went down")
        leaks = secrets_in_log(a.p.log(), [s for s in secrets if len(s) >= 8])
        check(not leaks, "no password, hash, cookie, CSRF token or API token in %d log lines"
              % len(a.p.log()), leaks[:3])
        ws.close()
    finally:
        if tap:
            tap.stop()
        a.stop(ck.failed)


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_accounts, print_tb=True, time_inline=True))
