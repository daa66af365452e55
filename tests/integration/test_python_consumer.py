#!/usr/bin/python3
"""The Python example consumer (scripts/examples/tap_readings.py) keeps working against a
running pipeline: the .proto stays the public interface for other languages."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("MP_BIN_DIR", "build/bin")
SRC = os.environ.get("MP_SOURCE_DIR", ".")
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


tmp = tempfile.mkdtemp(prefix="mpy", dir="/tmp")
cfg = os.path.join(tmp, "c.toml")
with open(cfg, "w") as f:
    f.write('[general]\nrun_dir = "%s/run"\nstate_dir = "%s/state"\n'
            '[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = 4\n'
            '[upload]\nenabled = false\n' % (tmp, tmp))
sup = subprocess.Popen([os.path.join(BIN, "meterpipe"), "run", "-c", cfg],
                       stderr=subprocess.DEVNULL, start_new_session=True)
try:
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"),
               MP_PROTO_DIR=os.path.join(SRC, "proto"))
    t0 = time.time()
    out = subprocess.run([sys.executable, os.path.join(SRC, "scripts/examples/tap_readings.py"),
                          "--run-dir", tmp + "/run", "--count", "5"],
                         capture_output=True, text=True, timeout=60, env=env)
    lines = out.stdout.strip().splitlines()
    check(out.returncode == 0, "example consumer exits 0 (stderr: %s)" % out.stderr.strip()[-200:])
    check(len(lines) == 5, "five readings printed (%d)" % len(lines))
    pat = re.compile(r"^reading/home seq=(\d+) meter=home net=(-?[0-9.]+) W import_t1=([0-9.]+) kWh$")
    ms = [pat.match(l) for l in lines]
    check(all(ms), "each line has topic, seq, meter, a numeric net power and T1 import: %r"
          % lines[:2])
    if all(ms) and len(ms) == 5:
        seqs = [int(m.group(1)) for m in ms]
        check(seqs == list(range(seqs[0], seqs[0] + 5)), "seq numbers consecutive: %s" % seqs)
        t1 = [float(m.group(3)) for m in ms]
        check(t1 == sorted(t1), "T1 import counter never decreases: %s" % t1)
    check(time.time() - t0 < 30, "readings arrive at the configured rate")
finally:
    os.killpg(sup.pid, signal.SIGTERM)
    try:
        sup.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(sup.pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
