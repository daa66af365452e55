#!/usr/bin/python3
"""End to end: remote taps over TCP with CurveZMQ ([remote], the `remote` worker).

`meterpipe keygen` makes the server's key and two clients' keys; a pipeline on a simulated
meter runs with [remote] on 127.0.0.1:<free port> and only client A in authorized_keys_file.
`meterpipe tap --remote` with key A prints readings, with key B nothing (exit 1, and the
supervisor log has the rejection); a pyzmq CURVE client with key A gets readings too (custom
consumers); `check-config` names a missing key file; no secret key ever shows in a log;
SIGTERM stops everything cleanly.

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Prints one line per check and
`N passed, M failed`; exits 1 on any failure. Everything it starts is ended by pid.
"""
import importlib
import json
import os
import re
import stat
import subprocess
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import Pipeline, alive, free_port, note, run_cli, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

PORT = free_port()
BODY = """[[meter]]
name = "home"
source = "simulate"
rate_hz = 4

[upload]
enabled = false

[remote]
enabled = true
listen = "127.0.0.1:%d"
secret_key_file = "@DIR@/server.key"
authorized_keys_file = "@DIR@/authorized_keys"
""" % PORT


def read(path):
    with open(path) as f:
        return f.read().strip()


def json_lines(out):
    msgs = []
    for line in out.decode(errors="replace").splitlines():
        try:
            msgs.append(json.loads(line))
        except ValueError:
            pass
    return msgs


def load_schema(cache):
    """meterpipe_pb2, generated from proto/meterpipe.proto as the example consumer does."""
    os.environ["MP_PROTO_DIR"] = os.path.join(mptest.SOURCE_DIR, "proto")
    os.environ["XDG_CACHE_HOME"] = cache
    sys.path.insert(0, os.path.join(mptest.SOURCE_DIR, "scripts", "examples"))
    return importlib.import_module("tap_readings").load_schema()


p = Pipeline(BODY, prefix="mpr.")
secrets = []
try:
    # --- keys
    for name in ("server", "a", "b"):
        r = run_cli(["keygen", p.path(name)])
        check(r.returncode == 0, "keygen %s: exit 0" % name, r.stderr)
    mode = stat.S_IMODE(os.stat(p.path("server.key")).st_mode)
    check(mode == 0o600, "keygen: NAME.key has mode 0600", oct(mode))
    pub_a, pub_b, pub_server = (read(p.path(n + ".pub")) for n in ("a", "b", "server"))
    secrets = [read(p.path(n + ".key")) for n in ("server", "a", "b")]
    check(all(len(k) == 40 for k in [pub_a, pub_b, pub_server] + secrets),
          "keygen: 40-character Z85 keys in NAME.key and NAME.pub")
    check(zmq.curve_public(secrets[1].encode()).decode() == pub_a,
          "keygen: NAME.pub is the public key of NAME.key")
    r = run_cli(["keygen", p.path("a")])
    check(r.returncode != 0 and b"exists" in r.stderr and read(p.path("a.key")) == secrets[1],
          "keygen: an existing key pair is not overwritten", r.stderr)

    # --- check-config
    r = run_cli(["check-config", p.cfg])
    check(r.returncode == 2 and b"remote.authorized_keys_file" in r.stderr and
          b"cannot read" in r.stderr and b"authorized_keys" in r.stderr,
          "check-config: a missing authorized_keys_file is an error naming it", r.stderr)
    with open(p.path("authorized_keys"), "w") as f:
        f.write("# who may tap this meter\n%s laptop\n" % pub_a)
    r = run_cli(["check-config", p.cfg])
    check(r.returncode == 0 and b"remote" in r.stdout,
          "check-config: valid with both key files, workers include remote", r.stdout + r.stderr)
    os.rename(p.path("server.key"), p.path("server.key.away"))
    r = run_cli(["check-config", p.cfg])
    check(r.returncode == 2 and b"remote.secret_key_file" in r.stderr and
          b"server.key: No such file" in r.stderr,
          "check-config: a missing secret_key_file is an error naming it", r.stderr)
    os.rename(p.path("server.key.away"), p.path("server.key"))

    # --- run
    p.start()
    st = p.wait_running(10)
    check(st is not None and [w["name"] for w in st["workers"]] ==
          ["acquire", "process", "history", "remote"],
          "run: workers acquire, process, history, remote, all running",
          st and [w["name"] for w in st["workers"]])
    check(p.wait_log(r"remote: info: remote taps on tcp://127\.0\.0\.1:%d \(CurveZMQ; 1 "
                     r"authorized key" % PORT, 5),
          "remote logs its endpoint and the number of authorized keys", p.log()[-5:])

    remote = ["tap", "--remote", "127.0.0.1:%d" % PORT, "--server-key", p.path("server.pub")]
    t0 = time.monotonic()
    r = run_cli(remote + ["--key", p.path("a"), "reading/", "--count", "3", "--seconds", "15"])
    msgs = json_lines(r.stdout)
    check(r.returncode == 0 and len(msgs) == 3 and
          all(m["topic"] == "reading/home" and m["publisher"] == "process" and
              mptest.reading_of(m).get("meter") == "home" for m in msgs),
          "tap --remote with key A: 3 reading JSON lines (%.1f s)" % (time.monotonic() - t0),
          (r.returncode, r.stdout[:300], r.stderr))
    check(p.wait_log(r'remote: info: remote client "laptop" \(key %s\.\.\.\) connected from '
                     r'127\.0\.0\.1' % re.escape(pub_a[:8]), 3),
          "the supervisor log names the accepted client", p.log()[-5:])
    # the server key given as the key itself, the client key as NAME.key
    r = run_cli(["tap", "--remote", "127.0.0.1:%d" % PORT, "--server-key", pub_server,
                 "--key", p.path("a.key"), "--count", "1", "--seconds", "15", "reading/"])
    check(r.returncode == 0 and len(json_lines(r.stdout)) == 1,
          "tap --remote: --server-key as Z85 text and --key as NAME.key work too", r.stderr)

    t0 = time.monotonic()
    r = run_cli(remote + ["--key", p.path("b"), "--count", "1", "--seconds", "3"])
    took = time.monotonic() - t0
    check(r.returncode == 1 and not r.stdout and b"refused" in r.stderr,
          "tap --remote with key B: nothing printed, exit 1, says the key was refused "
          "(%.1f s)" % took, (r.returncode, r.stdout[:200], r.stderr))
    check(p.wait_log(r"remote: warn: rejected remote client key %s" % re.escape(pub_b[:8]), 3),
          "the supervisor log has the rejection warning with B's first 8 characters",
          p.log()[-5:])
    r = run_cli(remote + ["--key", p.path("nokey")])
    check(r.returncode == 2 and b"nokey" in r.stderr and len(r.stderr.splitlines()) == 1,
          "tap --remote with a missing key file: one clear line, exit 2", r.stderr)
    r = run_cli(remote + ["--key", p.path("a.pub")])
    check(r.returncode == 2 and b"public key" in r.stderr,
          "tap --remote with a .pub as --key: says a secret key is needed", r.stderr)

    # --- a custom consumer: pyzmq with CURVE
    pb = load_schema(p.path("cache"))
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    # as the README shows it: the client's NAME.key, the server's NAME.pub
    secret = open(p.path("a.key")).read().strip().encode()
    s.curve_secretkey = secret
    s.curve_publickey = zmq.curve_public(secret)
    s.curve_serverkey = open(p.path("server.pub")).read().strip().encode()
    s.setsockopt(zmq.SUBSCRIBE, b"reading/")
    s.connect("tcp://127.0.0.1:%d" % PORT)
    got = []
    end = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < end:
        if s.poll(200):
            topic, payload = s.recv_multipart()
            env = pb.Envelope()
            env.ParseFromString(payload)
            got.append((topic, env))
    s.close()
    ctx.term()
    check(len(got) == 2 and all(t == b"reading/home" and e.reading.meter == "home" and
                                e.publisher == "process" and len(e.reading.values) > 5
                                for t, e in got),
          "pyzmq CURVE client with key A: reading/home Envelopes with values",
          [(t, e.publisher) for t, e in got])

    # (health comes once a second: wait for each counter, a busy machine may lag)
    c = p.wait_counter("remote", "remote_clients_rejected", lambda v: v >= 1, 20)
    p.wait_counter("remote", "remote_clients_accepted", lambda v: v >= 3, 20)
    p.wait_counter("remote", "remote_forwarded", lambda v: v >= 6, 20)
    cs = p.counters("remote")
    check(cs.get("remote_clients_accepted", 0) >= 3 and c >= 1 and
          cs.get("remote_forwarded", 0) >= 6,
          "remote health counters: clients accepted, rejected, messages forwarded", cs)

    # --- stop
    pids = p.pids()
    rc = p.stop_process()
    check(rc == 0, "SIGTERM: the supervisor exits 0", rc)
    check(not any(alive(pid) for pid in pids.values() if pid > 0),
          "SIGTERM: no worker left", pids)
    log = p.log()
    check(not any("did not stop" in l or "SIGKILL" in l for l in log) and
          any(l.endswith("stopped") for l in log), "SIGTERM: every worker stopped in time",
          log[-8:])
    check(all(mptest.no_crash_text(l) for l in log), "no crash in the log")
    check(secrets and not any(k in l for k in secrets for l in log),
          "no secret key appears in the log (%d lines)" % len(log))
    note("log: " + " | ".join(l for l in log if "remote" in l)[:600])
finally:
    p.stop()

sys.exit(ck.finish())
