#!/usr/bin/python3
"""End to end: the history worker (history/) through `meterpipe run`.

40 simulated days at high speed (simulate source, speed 172800, 20 telegrams/s: one reading
every 2.4 simulated hours): every day's import/export per tariff and gas in the database
equals the difference of the meter's counters (as tapped from the bus) at the day's two
midnights in Europe/Amsterdam, exactly; months sum their days; each day's and month's cost
equals a hand computation over two tariff periods; `meterpipe export` as CSV parses with
Python's csv module and equals the same export as JSON; PRAGMA integrity_check is ok.

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Prints one line per check and
`N passed, M failed`; exits 1 on any failure. Everything it starts is ended by pid.
"""
import csv
import datetime
import io
import json
import os
import sqlite3
import sys
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

TZ = ZoneInfo("Europe/Amsterdam")
SPEED = 172800
RATE = 20
DAYS = 40
COUNTERS = ["energy_import_t1_kwh", "energy_import_t2_kwh", "energy_export_t1_kwh",
            "energy_export_t2_kwh", "gas_m3"]


def local_date(ns):
    return datetime.datetime.fromtimestamp(ns / 1e9, TZ).date()


def midnight(d):
    return int(datetime.datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp())


def tariffs(first):
    """Two price periods: from the first simulated day, and from 20 days later."""
    a = {"valid_from": first.isoformat(), "import_t1_per_kwh": 0.21, "import_t2_per_kwh": 0.27,
         "export_t1_per_kwh": 0.06, "export_t2_per_kwh": 0.08, "gas_per_m3": 1.10,
         "fixed_per_day": 0.50}
    b = {"valid_from": (first + datetime.timedelta(days=20)).isoformat(),
         "import_t1_per_kwh": 0.31, "import_t2_per_kwh": 0.37, "export_t1_per_kwh": 0.01,
         "export_t2_per_kwh": 0.02, "gas_per_m3": 1.45, "fixed_per_day": 0.65}
    return [a, b]


def tariff_toml(ts):
    out = ""
    for t in ts:
        out += "[[tariff]]\n" + "".join(
            "%s = %s\n" % (k, json.dumps(v)) for k, v in t.items()) + 'currency = "EUR"\n'
    return out


def tariff_on(ts, day):
    found = None
    for t in ts:
        if t["valid_from"] <= day.isoformat():
            found = t
    return found


def readings_of(tap):
    """(meter time ns, seq, {counter: value}) of every tapped reading, in seq order."""
    out = []
    for m in tap.messages("reading/home"):
        r = m["envelope"]["reading"]
        vals = {v["name"]: v["number"] for v in r["values"] if "number" in v}
        out.append((int(r["meter_time_ns"]), int(m["seq"]), vals))
    out.sort(key=lambda x: x[1])
    return out


def expected_days(rs):
    """Per local day: the counters' differences between the last readings before its two
    midnights. Only days whose both boundaries lie inside the tapped span."""
    days = {}
    first = local_date(rs[0][0]) + datetime.timedelta(days=1)
    last = local_date(rs[-1][0])
    d = first
    while d < last:
        m0, m1 = midnight(d) * 10**9, midnight(d + datetime.timedelta(days=1)) * 10**9
        before0 = [r for r in rs if r[0] < m0][-1]
        before1 = [r for r in rs if r[0] < m1][-1]
        days[d] = {c: round(before1[2][c] - before0[2][c], 3) for c in COUNTERS}
        d += datetime.timedelta(days=1)
    return days


def export(p, res, fmt, first, last):
    r = mptest.run_cli(["export", "-c", p.cfg, "--meter", "home", "--from", first.isoformat(),
                        "--to", last.isoformat(), "--resolution", res, "--" + fmt], text=True)
    return r


def json_rows(text):
    """The rows of an export's JSON as dicts by column name."""
    t = json.loads(text)
    return [dict(zip(t["columns"], r)) for r in t["rows"]]


def rows_equal(csv_rows, json_rows):
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


def test_forty_days():
    today = datetime.datetime.now(TZ).date()
    ts = tariffs(today)
    body = ('[[meter]]\nname = "home"\nsource = "simulate"\nspeed = %d\nrate_hz = %d\n\n'
            '[upload]\nenabled = false\n\n%s' % (SPEED, RATE, tariff_toml(ts)))
    p = Pipeline(body, general='timezone = "Europe/Amsterdam"', prefix="mph.")
    tap = p.start_tap(["reading/"])
    try:
        p.start()
        st = p.wait_running(15)
        if not check(st is not None and "history" in [w["name"] for w in st["workers"]],
                     "the supervisor starts the history worker", p.log()[-5:]):
            return
        span = (DAYS + 2) * 86400 * 10**9
        ok = wait_for(lambda: len(tap.messages()) > 2 and
                      int(tap.messages()[-1]["envelope"]["reading"]["meter_time_ns"]) -
                      int(tap.messages()[0]["envelope"]["reading"]["meter_time_ns"]) > span, 60)
        check(ok, "the simulated meter ran through %d days" % (DAYS + 2), len(tap.messages()))
        rc = p.stop(remove=False)
        check(rc == 0, "SIGTERM: the pipeline stops (exit 0)", rc)
        rs = readings_of(tap)
        seqs = [r[1] for r in rs]
        check(seqs == list(range(seqs[0], seqs[0] + len(seqs))),
              "the tap saw every reading in between (no seq gap)", seqs[:3])
        want = expected_days(rs)
        check(len(want) >= DAYS, "%d complete local days to compare" % len(want), len(want))
        db = os.path.join(p.dir, "state", "history.sqlite")
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok",
              "PRAGMA integrity_check: ok")
        con.close()
        first, last = min(want), max(want)
        r = export(p, "day", "json", first, last)
        if not check(r.returncode == 0, "export --resolution day --json: exit 0", r.stderr):
            return
        got = {datetime.date.fromisoformat(row["time"]): row for row in json_rows(r.stdout)}
        bad = [(d, c, w[c], got.get(d, {}).get(c)) for d, w in want.items() for c in COUNTERS
               if got.get(d, {}).get(c) is None or abs(got[d][c] - w[c]) > 5e-7]
        check(not bad, "every day's import/export per tariff and gas = the counters' difference "
              "(%d days x %d values)" % (len(want), len(COUNTERS)), bad[:5])
        check(all(got[d]["estimated"] == 0 for d in want), "no day in between is estimated",
              [d for d in want if got[d]["estimated"]])
        bad_cost = []
        for d, w in want.items():
            t = tariff_on(ts, d)
            cost = (w["energy_import_t1_kwh"] * t["import_t1_per_kwh"] +
                    w["energy_import_t2_kwh"] * t["import_t2_per_kwh"] -
                    w["energy_export_t1_kwh"] * t["export_t1_per_kwh"] -
                    w["energy_export_t2_kwh"] * t["export_t2_per_kwh"] +
                    w["gas_m3"] * t["gas_per_m3"] + t["fixed_per_day"])
            if abs(got[d]["cost"] - cost) > 1e-4:
                bad_cost.append((d, got[d]["cost"], cost))
        check(not bad_cost, "every day's cost = the hand computation over two tariff periods",
              bad_cost[:5])
        # months: the sum of their days (the whole database, every day of the month)
        month_first = first.replace(day=1)
        rm = export(p, "month", "json", month_first, last)
        rd = export(p, "day", "json", month_first, last)
        months = json_rows(rm.stdout)
        alldays = json_rows(rd.stdout)
        bad_month = []
        for m in months:
            ds = [d for d in alldays if d["time"].startswith(m["time"])]
            for c in COUNTERS + ["cost"]:
                s = sum(d[c] for d in ds if d[c] is not None)
                if m[c] is None or abs(m[c] - s) > 1e-3:
                    bad_month.append((m["time"], c, m[c], s))
        check(len(months) >= 2 and not bad_month, "%d months: each sums its days" % len(months),
              bad_month[:5])
        for res in ("day", "month", "hour", "minute"):
            rc_ = export(p, res, "csv", first, first + datetime.timedelta(days=3))
            rj = export(p, res, "json", first, first + datetime.timedelta(days=3))
            rows = list(csv.DictReader(io.StringIO(rc_.stdout, newline="")))
            check(rc_.returncode == 0 and rows and rows_equal(rows, json_rows(rj.stdout)),
                  "export --resolution %s: CSV (csv module) equals JSON, %d rows"
                  % (res, len(rows)),
                  (rc_.stderr, rc_.stdout[:300]))
        r = mptest.run_cli(["export", "-c", p.cfg, "--meter", "garage", "--from",
                            first.isoformat()], text=True)
        check(r.returncode == 2 and "garage" in r.stderr, "export of an unknown meter: exit 2",
              (r.returncode, r.stderr))
    finally:
        p.stop()


sys.exit(mptest.script_main(ck, test_forty_days))
