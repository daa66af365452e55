#!/usr/bin/python3
"""serve closes open WebSockets when their login ends (issue 20), with the real pipeline:
a WebSocket opened with a session gets a close frame 4001 ("log in again") at logout, when
the user's password is changed by `meterpipe user passwd` (no request needed), and when the
session reaches its absolute expiry (session_max_s, kept active by requests meanwhile); one
opened with an API token closes when `meterpipe user del` removes its user. A WebSocket with
an ended session is refused.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
from mptest_auth import USERS, AuthServe  # noqa: E402
from mptest_serve import WsClient  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=1200)
check = ck.check
OLGA, VIC = USERS["olga"][1], USERS["vic"][1]
MAX_S = 20  # session_max_s: the absolute expiry
DEADLINE = 30  # generous: a loaded machine


def ws_of(a, client=None, headers=None):
    h = dict(headers or {})
    if client:
        h["Cookie"] = "meterpipe_session=" + client.jar.get("meterpipe_session", "")
    return WsClient(a.port, headers=h)


def still_open(ws, seconds=0.5):
    """Nothing closed the socket within `seconds` (pings answered)."""
    return ws.wait_close(seconds) is None and not ws.closed


def closed_for_login(ws, what):
    got = ws.wait_close(DEADLINE)
    check(got is not None and got[0] == 4001 and "log in" in got[1],
          "%s: the server closes the WebSocket with 4001" % what, got)
    return got


def test_ws_login_end():
    a = AuthServe("session_max_s = %d" % MAX_S)
    try:
        for r in a.added:
            check(r.returncode == 0, "meterpipe user add", r.stderr)
        a.p.start()
        if not check(wait_for(a.serve_up, 20, 0.2), "serve answers its login page"):
            return

        # --- logout
        op = a.client()
        t_login = time.monotonic()
        check(op.login("olga", OLGA).status == 303, "operator logs in")
        ws = ws_of(a, op)
        check("101" in ws.status_line, "a WebSocket with the session opens", ws.status_line)
        check(still_open(ws), "and stays open while the session lives")
        csrf = op.csrf()
        cookie = op.jar.get("meterpipe_session", "")
        lo = op.request("POST", "/logout", "", {"X-CSRF-Token": csrf})
        t_logout = time.monotonic()
        check(lo.status == 303, "logout", lo.body)
        closed_for_login(ws, "logout")
        mptest.note("close frame %.0f ms after the logout's answer"
                    % ((time.monotonic() - t_logout) * 1000))
        check(time.monotonic() - t_login < MAX_S, "closed by the logout, not by the expiry")
        again = WsClient(a.port, headers={"Cookie": "meterpipe_session=" + cookie})
        check("101" not in again.status_line, "a WebSocket with the ended session is refused",
              again.status_line)
        again.close()

        # --- a new password, without any request after it
        vw = a.client()
        check(vw.login("vic", VIC).status == 303, "viewer logs in")
        vws = ws_of(a, vw)
        check("101" in vws.status_line and still_open(vws), "the viewer's WebSocket is open",
              vws.status_line)
        pw = mptest.run_cli(["user", "passwd", "vic", "--users-file", a.users_file],
                            input=b"Another-Quiet-Harbor-88\n", timeout=60)
        check(pw.returncode == 0, "meterpipe user passwd vic", pw.stderr)
        closed_for_login(vws, "a new password")

        # --- a deleted user's token
        tok = mptest.run_cli(["user", "token", "vic", "--users-file", a.users_file], timeout=30,
                             text=True).stdout.strip()
        tws = ws_of(a, headers={"Authorization": "Bearer " + tok})
        check("101" in tws.status_line and still_open(tws), "a WebSocket with an API token "
              "opens", tws.status_line)
        dl = mptest.run_cli(["user", "del", "vic", "--users-file", a.users_file], timeout=30)
        check(dl.returncode == 0, "meterpipe user del vic", dl.stderr)
        closed_for_login(tws, "the user deleted")

        # --- absolute expiry, while the session is in use
        op2 = a.client()
        t0 = time.monotonic()
        check(op2.login("olga", OLGA).status == 303, "operator logs in again")
        ews = ws_of(a, op2)
        check("101" in ews.status_line, "a WebSocket with the new session opens",
              ews.status_line)
        statuses, got = [], None
        end = time.monotonic() + MAX_S + DEADLINE
        while got is None and not ews.closed and time.monotonic() < end:
            statuses.append(op2.get("/api/last").status)
            got = ews.wait_close(1.0)
        waited = time.monotonic() - t0
        check(got is not None and got[0] == 4001, "at the session's expiry the server closes the "
              "WebSocket with 4001 (after %.1f s)" % waited, got)
        check(waited >= MAX_S and statuses and statuses[0] == 200,
              "not before session_max_s (%d s) while the session was in use" % MAX_S,
              (waited, statuses))
        check(op2.get("/api/last").status == 401, "and the session is over for requests too")
        mptest.note("expiry close %.1f s after login (session_max_s %d)" % (waited, MAX_S))
        check(a.p.log_matching("websocket client .*: its login ended"), "the closes are logged",
              a.p.log()[-5:])
        st = mptest.status_json(cfg=a.cfg) or {}
        serve = [w for w in st.get("workers", []) if w.get("name") == "serve"]
        check(a.p.proc.poll() is None and serve and serve[0]["restarts"] == 0 and
              not a.p.log_matching("AddressSanitizer|runtime error"),
              "serve never went down (no restart, no sanitizer report)", (serve, st))
    finally:
        a.stop(ck.failed)


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_ws_login_end, print_tb=True, time_inline=True))
