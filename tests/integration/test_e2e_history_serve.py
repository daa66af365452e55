#!/usr/bin/python3
"""End to end: the history database in serve (serve/history_api.h) and on the page.

A simulated meter at high speed (10 simulated days in about 10 s) with [serve] and a
[[tariff]]: /api/history/{meter}?from&to&resolution (day and minute) equals `meterpipe export
--json` on the same file; /api/export/{meter}.csv parses with Python's csv module and equals
the JSON; bad parameters are 400, an unknown meter 404. The page in headless Chromium draws
the history bars (svg#hist-chart data-bars > 0); screenshots at desktop and phone width go to
MP_BUILD_DIR/artifacts/history.png and history-phone.png.
"""
import csv
import datetime
import io
import json
import os
import re
import sqlite3
import sys
import urllib.error
import urllib.request
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, wait_for  # noqa: E402
from mptest_serve import BUILD_DIR, chromium  # noqa: E402

ck = mptest.Checker()
check = ck.check
TZ = ZoneInfo("Europe/Amsterdam")


def get(port, path):
    try:
        r = urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10)
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def json_rows(t):
    """The rows of an export's JSON (parsed) as dicts by column name."""
    return [dict(zip(t["columns"], r)) for r in t["rows"]]


def same_rows(csv_rows, json_rows):
    if len(csv_rows) != len(json_rows):
        return False
    for c, j in zip(csv_rows, json_rows):
        if set(c) != set(j):
            return False
        for k, v in c.items():
            if k == "time":
                if v != j[k]:
                    return False
            elif (v == "") != (j[k] is None) or (v != "" and abs(float(v) - j[k]) > 1e-9):
                return False
    return True


def days_in_db(p):
    db = os.path.join(p.dir, "state", "history.sqlite")
    if not os.path.exists(db):
        return 0
    try:
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            return con.execute("SELECT count(*) FROM days").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_api_and_page():
    today = datetime.datetime.now(TZ).date()
    port = mptest.free_port()
    body = ('[[meter]]\nname = "home"\nsource = "simulate"\nspeed = 86400\nrate_hz = 20\n\n'
            '[upload]\nenabled = false\n\n[serve]\nenabled = true\nlisten = "127.0.0.1:%d"\n\n'
            '[[tariff]]\nvalid_from = %s\nimport_t1_per_kwh = 0.2\nimport_t2_per_kwh = 0.3\n'
            'gas_per_m3 = 1.1\nfixed_per_day = 0.4\n' % (port, today.isoformat()))
    p = Pipeline(body, general='timezone = "Europe/Amsterdam"', prefix="mphsv.")
    try:
        p.start()
        if not check(p.wait_running(15) is not None, "pipeline with serve and history running",
                     p.log()[-5:]):
            return
        check(wait_for(lambda: days_in_db(p) >= 8, 60), "the history has 8 days",
              days_in_db(p))
        frm, to = today.isoformat(), (today + datetime.timedelta(days=6)).isoformat()
        for res in ("day", "minute"):
            q = "?from=%s&to=%s&resolution=%s" % (frm, to, res)
            st, ct, js = get(port, "/api/history/home" + q)
            if not check(st == 200 and ct.startswith("application/json"),
                         "GET /api/history/home%s: 200 JSON" % q, (st, js[:200])):
                continue
            api = json.loads(js)
            cli = mptest.run_cli(["export", "-c", p.cfg, "--meter", "home", "--from", frm,
                                  "--to", to, "--resolution", res, "--json"], text=True)
            check(cli.returncode == 0 and json.loads(cli.stdout)["rows"] == api["rows"],
                  "%s: the API's rows equal `meterpipe export --json` (%d rows)"
                  % (res, len(api["rows"])), cli.stderr)
            st, ct, text = get(port, "/api/export/home.csv" + q)
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            check(st == 200 and ct.startswith("text/csv") and rows and
                  same_rows(rows, json_rows(api)),
                  "%s: /api/export/home.csv parses with csv and equals the JSON" % res,
                  (st, ct, text[:200]))
            if res == "day":
                check(all(r.get("cost") is not None for r in json_rows(api)) and
                      api["currency"] == "EUR", "days have a cost in EUR", api["rows"][:1])
        st, _, js = get(port, "/api/history/garage?from=%s" % frm)
        check(st == 404 and "garage" in js, "unknown meter: 404", (st, js))
        st, _, js = get(port, "/api/history/home?from=%s&resolution=week" % frm)
        check(st == 400 and "resolution" in js, "resolution=week: 400 naming it", (st, js))
        st, _, js = get(port, "/api/history/home?from=yesterday")
        check(st == 400 and "date" in js, "from=yesterday: 400", (st, js))
        st, _, js = get(port, "/api/history/home?minutes=5")
        check(st == 200 and "points" in js, "without from: the in-memory route still answers",
              (st, js[:100]))

        url = "http://127.0.0.1:%d/" % port
        r, err = chromium(["--window-size=1200,1400", "--virtual-time-budget=5000",
                           "--dump-dom"], url)
        if check(r is not None and r.returncode == 0, "chromium --dump-dom", err):
            dom = r.stdout.decode(errors="replace")
            bars = re.search(r'id="hist-chart"[^>]*data-bars="([0-9]+)"', dom) or \
                re.search(r'data-bars="([0-9]+)"[^>]*id="hist-chart"', dom)
            check(bars and int(bars.group(1)) > 0, "the page draws history bars (%s)"
                  % (bars.group(1) if bars else None))
        art = os.path.join(BUILD_DIR, "artifacts")
        os.makedirs(art, exist_ok=True)
        for name, size in (("history.png", "1200,1400"), ("history-phone.png", "390,1900")):
            shot = os.path.join(art, name)
            if os.path.exists(shot):
                os.remove(shot)
            r, err = chromium(["--window-size=" + size, "--virtual-time-budget=5000",
                               "--screenshot=" + shot], url)
            check(r is not None and os.path.exists(shot), "screenshot " + shot, err)
    finally:
        p.stop()


sys.exit(mptest.script_main(ck, test_api_and_page))
