#!/usr/bin/python3
"""The live page with accounts in headless Chromium (issue 20), driven over the DevTools
protocol: the operator logs in through the form, switches the sim relay on for 10 minutes
with the page's controls; a second open page shows the new state and the override's expiry
(pushed over the WebSocket); the operator logs out and the second page, its WebSocket closed
by serve, says to log in again; a viewer sees no controls and the API
answers 403 to the viewer's switch.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
from mptest_auth import USERS, AuthServe, Browser  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=1200)
check = ck.check


def log_in(page, base, user):
    page.goto(base + "/login")
    page.wait("document.getElementById('login-submit') !== null")
    page.eval("document.getElementById('username').value = %r;"
              "document.getElementById('password').value = %r;"
              "document.getElementById('login-submit').click(); true" % (user, USERS[user][1]))
    return page.wait("location.pathname === '/' && document.getElementById('who') && "
                     "document.getElementById('who').textContent", 30)


def test_page():
    a = AuthServe()
    b = None
    try:
        a.p.start()
        if not check(wait_for(a.serve_up, 20, 0.2), "serve answers its login page"):
            return
        b = Browser()
        if not check(b.ok, "headless Chromium with DevTools", b.why):
            return
        base = "http://127.0.0.1:%d" % a.port
        p1 = b.new_page()
        p1.goto(base + "/")
        check(p1.wait("location.pathname === '/login'"), "without login the page sends to /login")
        who = log_in(p1, base, "olga")
        check(who == "olga (operator)", "the operator logs in through the form", who)
        check(p1.wait("document.querySelector('[data-controls=\"boiler\"]') !== null"),
              "the operator sees relay controls")
        check(p1.wait("document.querySelector('li[data-relay=\"boiler\"]').dataset.on === "
                      "'false'"), "the relay is off (the rules keep it off)")
        p2 = b.new_page(base + "/")
        check(p2.wait("document.getElementById('conn').className === 'conn on' && "
                      "document.querySelector('li[data-relay=\"boiler\"]') !== null"),
              "a second page is open with a live WebSocket")
        t_click = time.time()
        p1.eval("document.querySelector('[data-for=\"boiler\"]').value = '600';"
                "document.querySelector('[data-controls=\"boiler\"] [data-mode=\"on\"]').click();"
                "true")
        res = p1.wait("(function(){const m = document.querySelector('[data-result=\"boiler\"]');"
                      "return m && m.dataset.ok === 'true' && m.textContent;})()")
        check(res and "on for 10 min" in res, "the page shows the result at once", res)
        shown = p2.wait("(function(){const li = document.querySelector('li[data-relay=\"boiler\"]');"
                        "return li && li.dataset.on === 'true' && li.dataset.override === 'on' && "
                        "li.dataset.until;})()")
        until_s = int(shown) / 1000 if shown else 0
        check(shown and t_click + 590 <= until_s <= time.time() + 601,
              "the second page shows boiler on, override until about 10 min from now",
              (shown, t_click))
        st = mptest.run_cli(["status", "-c", a.cfg], text=True, timeout=10).stdout
        check("boiler" in st and "s left)" in st, "`meterpipe status` shows the override", st)
        p1.eval("document.querySelector('#logout button').click(); true")
        check(p1.wait("location.pathname === '/login'"), "log out lands on /login")
        ended = p2.wait("(function(){const c = document.getElementById('conn');"
                        "return c && c.classList.contains('ended') && c.textContent;})()")
        check(ended and "log in again" in ended, "the other page's WebSocket is closed at once "
              "and it says to log in again", ended)
        code = p2.eval("fetch('/api/last').then(r => r.status)")
        check(code == 401, "the session is over for the other page too", code)
        who = log_in(p1, base, "vic")
        check(who == "vic (viewer)", "a viewer logs in", who)
        check(p1.wait("document.querySelector('li[data-relay=\"boiler\"]') !== null"),
              "the viewer sees the relays")
        check(p1.eval("document.querySelector('[data-controls]') === null"),
              "the viewer sees no relay controls")
        code = p1.eval("fetch('/api/session').then(r => r.json()).then(s => fetch("
                       "'/api/relays/boiler', {method: 'POST', headers: {'Content-Type': "
                       "'application/json', 'X-CSRF-Token': s.csrf}, body: "
                       "JSON.stringify({mode: 'off'})})).then(r => r.status)")
        check(code == 403, "the viewer's switch from the page's own origin is 403", code)
        p1.close()
        p2.close()
    finally:
        if b:
            b.stop()
        a.stop(ck.failed)


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, test_page, print_tb=True, time_inline=True))
