#!/usr/bin/python3
"""End-to-end test of the uploader's TLS settings against a real InfluxDB 1.6 over HTTPS.

A private CA and server certificates are made here with the `openssl` command line; influxd
serves HTTPS on 127.0.0.1 with authentication on (the uploader's username + password_file
must get through, which also proves they travel inside TLS). A simulated DSMR meter feeds
`meterpipe run` ([upload] target = "influxdb1"); `meterpipe tap reading/` records what process
publishes, and InfluxDB is queried for what arrived.

Cases (checks printed as "ok   [case] ..." / "FAIL [case] ..."):
  setup       CA + certificate for IP:127.0.0.1 / DNS:localhost, and one for "example.invalid"
              (same CA); two influxd with https-enabled; python's ssl against the CA gets 204
              from /ping, and fails without the CA / with the wrong name (the premises below)
  ca_file     url https://127.0.0.1:<port>, ca_file = the CA: every reading the tap saw arrives,
              each exactly once (log_level debug)
  unknown_ca  no ca_file, tls_verify default (true): nothing arrives; one clear log line names
              the certificate problem (rate limited: at most a few in ~10 s although influxd saw
              more handshakes); points_pending / spool_bytes grow; restarted with ca_file (same
              state_dir) the spooled points all arrive
  hostname    ca_file set, but the server's certificate is for "example.invalid": a host-name
              error is logged, nothing arrives
  no_verify   tls_verify = false against the unknown CA: the readings arrive; the uploader must
              warn at start that verification is off
  secrets     the password appears in no log line (any case) and not in status --json

Environment (set by ctest): MP_BIN_DIR. Standard library only; needs influxd and openssl.
Prints one line per check and `N passed, M failed`; exits 1 on any failure. About 40 s.
"""
import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import alive, note, procs_using, wait_for  # noqa: E402

RATE_HZ = 10
# The tap subscribes after process bound its socket; on a loaded machine up to a few seconds
# later. Readings it missed are still expected in InfluxDB (counted, values not compared).
TAP_LATE_MAX = 5 * RATE_HZ
SPEED = 100        # 10 meter seconds between telegrams: one point per reading (precision s)
DB = "tls"
USER = "mp"
PASSWORD = "pw-%016x-Geheim" % random.getrandbits(64)

ck = mptest.Checker()
cleanups = []      # run at the end whatever happened (reverse order)
all_logs = []      # (case, log lines) of every pipeline, for the secrets check


def check(label, cond, what, detail=""):
    return ck.check(cond, "[%s] %s" % (label, what), detail)


# ---------------------------------------------------------------------------------------------
# Certificates

class Pki:
    """A private CA and server certificates, all in a temp dir, made with `openssl`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mptls.pki.", dir="/tmp")
        cleanups.append(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.ca = self.path("ca.pem")
        self.ca_key = self.path("ca.key")
        self._run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                   "-subj", "/CN=meterpipe test CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, args):
        r = subprocess.run(["openssl"] + args, capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.decode(errors="replace")))
        return r.stdout.decode(errors="replace")

    def server(self, name, cn, san):
        """(certificate, key) for a server, signed by the CA."""
        key, csr, crt, ext = (self.path(name + s) for s in (".key", ".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        self._run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn])
        self._run(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                   "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
        return crt, key

    def text(self, crt):
        return self._run(["x509", "-in", crt, "-noout", "-text"])


# ---------------------------------------------------------------------------------------------
# influxd over HTTPS

def https_req(port, method, path, ctx, body=None, headers=None, timeout=10):
    """(status, body text); raises ssl.SSLError / OSError."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


class Influxd(mptest.InfluxServer):
    """mptest.InfluxServer with HTTPS (the given certificate) and authentication on (admin
    USER/PASSWORD made by setup_db)."""

    def __init__(self, crt, key, ca, name_ok=True):
        mptest.InfluxServer.__init__(
            self, prefix="mptls.ix.", scheme="https",
            http_extra='  auth-enabled = true\n  https-enabled = true\n'
                       '  https-certificate = "%s"\n  https-private-key = "%s"\n' % (crt, key))
        # the test's own client: trusts the CA; checks the name unless the cert is the wrong one
        self.ctx = ssl.create_default_context(cafile=ca)
        if not name_ok:
            self.ctx.check_hostname = False
        self.auth = {"Authorization": "Basic " +
                     base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()}
        cleanups.append(self.remove)

    def req(self, method, path, body=None, headers=None, ctx=None, timeout=10):
        try:
            return https_req(self.port, method, path, ctx or self.ctx, body, headers, timeout)
        except (OSError, http.client.HTTPException) as e:  # ssl.SSLError is an OSError
            return 0, repr(e)

    def ping(self):
        return self.req("GET", "/ping", timeout=1)[0]

    def query_post(self, q, auth=True):
        return self.req("POST", "/query", urllib.parse.urlencode({"q": q}).encode(),
                        dict({"Content-Type": "application/x-www-form-urlencoded"},
                             **(self.auth if auth else {})))

    def setup_db(self):
        """The admin user (allowed without auth while there is none), then the database."""
        st1, b1 = self.query_post("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES"
                                  % (USER, PASSWORD), auth=False)
        st2, b2 = self.query_post('CREATE DATABASE "%s"' % DB)
        return st1 == 200 and st2 == 200 and '"error"' not in b1 + b2

    def times(self, tag):
        """Point times (epoch s) of run=tag, or None when the query fails."""
        st, body = self.req("GET", "/query?" + urllib.parse.urlencode(
            {"db": DB, "epoch": "s",
             "q": "SELECT power_import_w FROM electricity WHERE run='%s'" % tag}),
            headers=self.auth, timeout=30)
        if st != 200:
            return None
        try:
            res = json.loads(body)["results"][0]
        except (ValueError, KeyError, IndexError):
            return None
        if "error" in res:
            return None
        return [v[0] for s in res.get("series", []) for v in s["values"]]

    def count(self, tag):
        t = self.times(tag)
        return -1 if t is None else len(t)

    def handshake_errors(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return sum(1 for l in f if "TLS handshake error" in l)
        except OSError:
            return 0



# ---------------------------------------------------------------------------------------------
# meterpipe run

class Run(mptest.Supervisor):
    """A config + `meterpipe run` + `meterpipe tap reading/` in one temp dir; the config can
    be rewritten and the pipeline started again on the same state_dir."""

    def __init__(self, label):
        self.label = label
        self.dir = tempfile.mkdtemp(prefix="mptls.", dir="/tmp")
        self.run_dir = os.path.join(self.dir, "run")
        self.state_dir = os.path.join(self.dir, "state")
        self.pw_file = os.path.join(self.dir, "influx.password")
        with open(self.pw_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.pw_file, 0o600)
        mptest.Supervisor.__init__(self, os.path.join(self.dir, "mp.toml"), start=False,
                                   status_args=["--run-dir", self.run_dir])
        self.tap = None
        self.frozen = None
        cleanups.append(self.cleanup)

    def configure(self, url, tag, extra="", log_level="info"):
        with open(self.cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\nwatchdog_s = 30\n'
                    'log_level = "%s"\n\n'
                    '[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = %d\nspeed = %d\n\n'
                    '[upload]\ntarget = "influxdb1"\nurl = "%s"\ndatabase = "%s"\n'
                    'username = "%s"\npassword_file = "%s"\nprecision = "s"\n'
                    'batch_size = 100\nbatch_age_s = 0.5\ntags = { run = "%s" }\n%s'
                    % (self.run_dir, self.state_dir, log_level, RATE_HZ, SPEED, url, DB, USER,
                       self.pw_file, tag, extra))

    def start(self):
        """Starts `meterpipe run` and the tap; the status once every worker runs, or None."""
        self.t_start = time.monotonic()
        self.journal0 = mptest.journal_frames(self.state_dir)  # frames of earlier runs
        pub = os.path.join(self.run_dir, "process.pub")
        if os.path.exists(pub):
            os.unlink(pub)  # stale socket of a previous run
        mptest.Supervisor.start(self)
        # subscribe the moment process has bound (readings before that: counted by seq)
        wait_for(lambda: os.path.exists(pub) or self.proc.poll() is not None, 10, 0.005)
        self.tap = mptest.Tap(self.run_dir, ["reading/"], stop_wait=5)
        return wait_for(self.all_running, 10, 0.1)

    def upload_log(self, since=0.0):
        return self.log_matching(r"^upload: ", since or self.t_start)

    def upload(self):
        """(counters, gauges, info) of the upload worker."""
        w = self.worker("upload") or {}
        return w.get("counters", {}), w.get("gauges", {}), w.get("info", {})

    def freeze(self):
        """SIGSTOP acquire: no new readings. Returns process's readings_home once settled."""
        w = self.worker("acquire")
        if not w or not w["pid"]:
            return None
        self.frozen = w["pid"]
        os.kill(self.frozen, signal.SIGSTOP)
        # frames still queued in the frozen acquire never reached its journal: not expected.
        # Every journaled frame reaches process (its heartbeat carries readings_home, sent
        # within 10 s of a change): wait for that rather than for a fixed time.
        journaled = mptest.journal_frames(self.state_dir) - self.journal0

        def settled():
            st = self.fresh_status(["process"])
            p = st and self.worker("process", st)
            return p if p and p["counters"].get("readings_home", 0) >= journaled else None
        p = wait_for(settled, 30, 0.2) or self.worker("process")
        if not p:
            return None
        return min(p["counters"].get("readings_home", 0), journaled)

    def thaw(self):
        if self.frozen and alive(self.frozen):
            try:
                os.kill(self.frozen, signal.SIGCONT)
            except OSError:
                pass
        self.frozen = None

    def readings(self):
        """[(seq, meter time s, instance)] of the tap."""
        out = []
        for m in (self.tap.messages("reading/") if self.tap else []):
            env = m.get("envelope", {})
            r = env.get("reading", {})
            out.append((int(m["seq"]), int(r.get("meter_time_ns", 0)) // 1000000000,
                        env.get("instance_id")))
        return out

    def stop(self):
        """Ends the supervisor, its workers and the tap; the supervisor's exit code."""
        self.thaw()
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.status()  # remember the worker pids
            rc = self.stop_process()
        for pid in list(self.seen_pids) + procs_using(self.cfg):
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.tap:
            self.tap.stop()
            self.tap = None
        return rc

    def cleanup(self):
        try:
            self.stop()
        finally:
            if os.path.isdir(self.dir):
                all_logs.append((self.label, self.log()))
                shutil.rmtree(self.dir, ignore_errors=True)


def expect_all(label, run, ix, tag, what="the readings", already=0, earlier_times=()):
    """Freezes acquire, then checks that every reading process published (readings_home; the
    tap saw all but the first k) arrives in InfluxDB as one point each, and that upload sent
    each once (plus `already` points an earlier run left in the journal, sent now under this
    run's tag: points are encoded when they are sent). The earlier run's simulated meter
    (speed 100) covered meter seconds this run covers again: a point of each run at the same
    second is one point in InfluxDB (same series and time), so with `earlier_times` (the
    earlier run's tapped times) the count is checked between the distinct times known and the
    number sent. Returns n published."""
    n_pub = run.freeze()
    reads = [r for r in run.readings() if n_pub is not None and r[0] <= n_pub]
    seqs = [r[0] for r in reads]
    k = seqs[0] - 1 if seqs else 0
    check(label, n_pub and len({r[2] for r in reads}) == 1 and k <= TAP_LATE_MAX and
          seqs == list(range(k + 1, n_pub + 1)),
          "the tap saw every published reading after its start (seq %d..%s)" % (k + 1, n_pub),
          (len(seqs), seqs[:3], seqs[-3:], n_pub))
    tap_times = {r[1] for r in reads}
    if len(tap_times) != len(reads):
        note("%d readings share a meter second with another (one point each in InfluxDB)"
             % (len(reads) - len(tap_times)))
    want = len(tap_times) + k + already
    known = tap_times | set(earlier_times)
    # with an earlier run, any point of this one (tapped or not: the first k, and the `already`
    # points of the earlier run) may share its second with another: at least every known time.
    # The k readings the tap missed may share seconds too (the simulated meter stamps the
    # telegrams it sends late in a row, on a loaded machine, with one second): at least one.
    want_min = len(known) if earlier_times else len(tap_times) + min(k, 1) + already
    wait_for(lambda: set(ix.times(tag) or []) >= known and ix.count(tag) >= want_min, 15, 0.3)
    got = ix.times(tag) or []
    missing = sorted(known - set(got))
    check(label, not missing and want_min <= len(got) <= want and len(set(got)) == len(got),
          "%s: %d readings -> %d points in InfluxDB (run='%s', %s), every tapped one present"
          % (what, n_pub or 0, len(got), tag,
             "exactly %d" % want if want_min == want else "%d..%d: meter seconds may "
             "coincide" % (want_min, want)),
          {"want": want, "want_min": want_min, "missing": missing[:5]})
    # upload's counters travel in its heartbeat (within 10 s of a change, later on a loaded
    # machine): wait until they say every point went out, or a generous deadline passed
    n_all = (n_pub or 0) + already

    def drained():
        c, gg, _ = run.upload()
        return (c.get("points_received") == n_all and c.get("points_sent") == n_all and
                gg.get("points_pending") == 0)
    wait_for(drained, 30, 0.2)
    cn, g, _ = run.upload()
    check(label, cn.get("points_received") == n_pub + already and
          cn.get("points_sent") == n_pub + already and g.get("points_pending") == 0,
          "each sent exactly once: upload received %s, sent %s%s, nothing pending"
          % (n_pub, n_pub, " + %d journaled before" % already if already else ""), (cn, g))
    return n_pub


TLS_LINE = r"^upload: (warn|error): .*(SSL|TLS|certificate)"


# ---------------------------------------------------------------------------------------------
def case_setup(pki):
    L = "setup"
    good_crt, good_key = pki.server("srv", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    bad_crt, bad_key = pki.server("other", "example.invalid", "DNS:example.invalid")
    txt = pki.text(good_crt)
    check(L, "IP Address:127.0.0.1" in txt and "DNS:localhost" in txt,
          "server certificate with subjectAltName IP:127.0.0.1, DNS:localhost")
    ix = Influxd(good_crt, good_key, pki.ca)
    ix_bad = Influxd(bad_crt, bad_key, pki.ca, name_ok=False)
    for name, x in (("127.0.0.1 certificate", ix), ("example.invalid certificate", ix_bad)):
        if not check(L, x.start(), "influxd with https-enabled (%s) on 127.0.0.1:%d: /ping "
                     "answers 204 over HTTPS (python ssl, the CA trusted)" % (name, x.port),
                     open(x.log_path, errors="replace").read()[-800:]):
            return None, None
        check(L, x.setup_db(), "%s: admin user and database %s created over HTTPS" % (name, DB))
    st, err = ix.req("GET", "/ping", ctx=ssl.create_default_context())
    check(L, st == 0 and "CERTIFICATE_VERIFY_FAILED" in err,
          "without the CA python's ssl refuses the server (unknown CA)", (st, err))
    st, err = ix_bad.req("GET", "/ping", ctx=ssl.create_default_context(cafile=pki.ca))
    check(L, st == 0 and "CERTIFICATE_VERIFY_FAILED" in err and "127.0.0.1" in err,
          "with the CA but the name checked, python's ssl refuses the example.invalid "
          "certificate (host-name mismatch)", (st, err))
    st, _ = ix.req("POST", "/write?db=" + DB, b"probe v=1 1\n")
    check(L, st == 401, "influxd refuses writes without credentials (auth on): %s" % st)
    return ix, ix_bad


def case_ca_file(pki, ix):
    L = "ca_file"
    run = Run(L)
    run.configure(ix.url, "ca", 'ca_file = "%s"\n' % pki.ca, log_level="debug")
    try:
        if not check(L, run.start(), "meterpipe run (url %s, ca_file = the CA, log_level "
                     "debug): every worker running" % ix.url, run.log()[-5:]):
            return
        time.sleep(4)
        st = run.status()
        check(L, st is not None and PASSWORD not in json.dumps(st),
              "[secrets] the password is not in status --json")
        expect_all(L, run, ix, "ca")
        bad = [x for x in run.log_matching(TLS_LINE) if "tls_verify = false" not in x]
        check(L, not bad, "no TLS error logged", bad[:3])
        rc = run.stop()
        check(L, rc == 0, "SIGTERM: clean stop (exit %s)" % rc)
    finally:
        run.cleanup()


def case_unknown_ca(pki, ix):
    L = "unknown_ca"
    run = Run(L)
    run.configure(ix.url, "u1")
    try:
        if not check(L, run.start(), "meterpipe run (url %s, no ca_file, tls_verify default): "
                     "every worker running" % ix.url, run.log()[-5:]):
            return
        hs0 = ix.handshake_errors()
        first = run.wait_log(TLS_LINE, 8, run.t_start)
        line = first[1] if first else ""
        note("logged: " + line)
        check(L, "SSL certificate problem: unable to get local issuer certificate" in line,
              "the uploader logs the certificate problem (curl's text)",
              run.upload_log()[-5:])
        check(L, line.startswith("upload: error: upload: configuration error") and
              "set upload.ca_file" in line,
              "... as a configuration error that says what to change (ca_file, host name)", line)
        samples = []
        while len(samples) < 4:
            time.sleep(2)
            # each sample from heartbeats sent after the previous sample was read (they come
            # within 10 s of a change, later on a loaded machine): no two samples show the
            # same heartbeat of acquire
            st = run.fresh_status(["acquire"])
            g = (run.worker("upload", st) or {}).get("gauges", {})
            samples.append((round(time.monotonic() - run.t_start, 1), g.get("points_pending"),
                            run.counters("acquire", st).get("journal_records")))
        note("(t, points_pending, acquire journal_records): %s" % samples)
        pend = [s[1] for s in samples if s[1] is not None]
        jr = [s[2] for s in samples if s[2] is not None]
        # the batch in flight is refilled between attempts (not during a backoff delay)
        check(L, len(pend) >= 3 and all(b >= a for a, b in zip(pend, pend[1:])) and
              pend[-1] > pend[0] and all(b > a for a, b in zip(jr, jr[1:])),
              "the points stay pending (points_pending and the journal grow)", samples)
        lines = run.log_matching(TLS_LINE, run.t_start)
        attempts = ix.handshake_errors() - hs0
        note("%d TLS error line(s) logged in %.0f s; influxd saw %d failed handshakes"
             % (len(lines), time.monotonic() - run.t_start, attempts))
        check(L, 1 <= len(lines) <= 3, "the error is rate limited: %d line(s) in ~10 s, not one "
              "per batch" % len(lines), lines)
        check(L, attempts >= 2, "the uploader kept retrying meanwhile (%d handshakes)" % attempts)
        cn, g, info = run.upload()
        check(L, "certificate" in info.get("last_error", ""),
              "status --json: upload last_error names it: %r" % info.get("last_error"), info)
        check(L, ix.count("u1") == 0 and cn.get("points_sent", 0) == 0,
              "nothing arrived in InfluxDB (points_sent %s)" % cn.get("points_sent"))
        check(L, cn.get("points_received", 0) > 0 and
              g.get("points_pending") == cn.get("points_received"),
              "every point received is pending (%s of %s)" % (g.get("points_pending"),
                                                              cn.get("points_received")))
        reads1 = run.readings()
        rc = run.stop()  # no freeze: a stopped simulator catches up in a burst when resumed
        check(L, rc == 0, "SIGTERM: clean stop (exit %s)" % rc)
        seqs = [r[0] for r in reads1]
        k1 = seqs[0] - 1 if seqs else 0
        n1 = len(seqs) + k1
        held = mptest.journal_frames(run.state_dir)
        check(L, k1 <= TAP_LATE_MAX and seqs == list(range(k1 + 1, n1 + 1)) and held >= n1,
              "acquire's journal holds a frame for every reading process published up to the "
              "stop (%d frames; tap: seq %d..%d)" % (held, k1 + 1, n1))

        # the fix: ca_file, same state_dir; the first run's points go out under the new tag
        since = time.monotonic()
        run.configure(ix.url, "u2", 'ca_file = "%s"\n' % pki.ca)
        if not check(L, run.start(), "restarted with ca_file set (same state_dir): running",
                     run.log()[-5:]):
            return
        first_times = {r[1] for r in reads1}
        wait_for(lambda: first_times <= set(ix.times("u2") or []), 15, 0.3)
        missing = sorted(first_times - set(ix.times("u2") or []))
        check(L, not missing, "every tapped reading of the first run arrives after the fix",
              missing[:5])
        time.sleep(2)
        expect_all(L, run, ix, "u2", "both runs after the fix", already=held,
                   earlier_times=first_times)
        bad = run.log_matching(TLS_LINE, since)
        check(L, not bad, "no TLS error after the fix", bad[:3])
        rc = run.stop()
        check(L, rc == 0, "SIGTERM: clean stop (exit %s)" % rc)
    finally:
        run.cleanup()


def case_hostname(pki, ix_bad):
    L = "hostname"
    run = Run(L)
    run.configure(ix_bad.url, "h", 'ca_file = "%s"\n' % pki.ca)
    try:
        if not check(L, run.start(), "meterpipe run (ca_file set, server certificate for "
                     "example.invalid, url %s): every worker running" % ix_bad.url,
                     run.log()[-5:]):
            return
        first = run.wait_log(TLS_LINE, 8, run.t_start)
        line = first[1] if first else ""
        note("logged: " + line)
        check(L, re.search(r"no alternative certificate subject name matches target host "
                           r"name '127\.0\.0\.1'", line) is not None,
              "the uploader logs a host-name mismatch", run.upload_log()[-5:])
        # the pending points reach upload's heartbeat within 10 s of a change (later on a
        # loaded machine); then a heartbeat sent 2 s later still says nothing was sent
        wait_for(lambda: run.upload()[1].get("points_pending", 0) > 0, 30, 0.2)
        time.sleep(2)
        st = run.fresh_status(["upload"])
        w = run.worker("upload", st) or {}
        cn, g = w.get("counters", {}), w.get("gauges", {})
        check(L, ix_bad.count("h") == 0 and cn.get("points_sent", 0) == 0 and
              g.get("points_pending", 0) > 0,
              "nothing sent (points_sent %s, pending %s)" % (cn.get("points_sent"),
                                                            g.get("points_pending")))
        rc = run.stop()
        check(L, rc == 0, "SIGTERM: clean stop (exit %s)" % rc)
    finally:
        run.cleanup()


def case_no_verify(ix):
    L = "no_verify"
    run = Run(L)
    run.configure(ix.url, "nv", "tls_verify = false\n")
    try:
        if not check(L, run.start(), "meterpipe run (tls_verify = false, no ca_file): every "
                     "worker running", run.log()[-5:]):
            return
        time.sleep(3)
        expect_all(L, run, ix, "nv", "despite the unknown CA")
        bad = [x for x in run.log_matching(TLS_LINE) if "tls_verify = false" not in x]
        check(L, not bad, "no TLS error logged", bad[:3])
        warn = run.log_matching(r"^upload: (warn|error): .*(tls_verify|verif)", run.t_start)
        check(L, warn, "the uploader warns at start that TLS verification is off",
              "no such line; upload's log: %s" % run.upload_log()[:6])
        rc = run.stop()
        check(L, rc == 0, "SIGTERM: clean stop (exit %s)" % rc)
    finally:
        run.cleanup()


def case_secrets():
    L = "secrets"
    enc = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    n = 0
    leaks = []
    for label, lines in all_logs:
        n += len(lines)
        leaks += [(label, l) for l in lines if PASSWORD in l or PASSWORD[3:19] in l or
                  enc[:16] in l]
    check(L, n > 0 and not leaks, "the password appears in no log line (%d lines of %d runs, "
          "incl. debug level and the TLS errors)" % (n, len(all_logs)), leaks[:3])


def main():
    if not os.access(mptest.MP, os.X_OK):
        check("main", False, "meterpipe found at %s (set MP_BIN_DIR)" % mptest.MP)
        return ck.finish()
    for tool, pkg in (("influxd", "influxdb"), ("openssl", "openssl")):
        if not shutil.which(tool):
            check("main", False, "%s installed (Debian package %s; scripts/setup --test)"
                  % (tool, pkg))
            return ck.finish()
    r = subprocess.run(["openssl", "version"], capture_output=True)
    note(r.stdout.decode(errors="replace").strip())
    try:
        pki = Pki()
        ix, ix_bad = case_setup(pki)
        if ix is None:
            return ck.finish()
        for fn, args in ((case_ca_file, (pki, ix)), (case_unknown_ca, (pki, ix)),
                         (case_hostname, (pki, ix_bad)), (case_no_verify, (ix,))):
            print("--- " + fn.__name__, flush=True)
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - a crash of the test itself is a failure
                import traceback
                tb = traceback.format_exc().strip().splitlines()
                check(fn.__name__, False, "raised", repr(e) + " at " + " | ".join(tb[-3:]))
        print("--- case_secrets", flush=True)
        case_secrets()
    finally:
        for c in reversed(cleanups):
            try:
                c()
            except Exception:  # noqa: BLE001 - best effort
                pass
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
