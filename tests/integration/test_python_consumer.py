#!/usr/bin/python3
"""The Python example consumer (scripts/examples/tap_readings.py) keeps working against a
running pipeline: the .proto stays the public interface for other languages."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402

ck = mptest.Checker()
check = ck.check


def main():
    p = mptest.Pipeline('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = 4\n'
                        '[upload]\nenabled = false\n', prefix="mpy.")
    p.start()
    try:
        env = dict(os.environ, XDG_CACHE_HOME=p.path("cache"),
                   MP_PROTO_DIR=os.path.join(mptest.SOURCE_DIR, "proto"))
        t0 = time.time()
        out = subprocess.run([sys.executable,
                              os.path.join(mptest.SOURCE_DIR, "scripts/examples/tap_readings.py"),
                              "--run-dir", p.run_dir, "--count", "5"],
                             capture_output=True, text=True, timeout=60, env=env)
        lines = out.stdout.strip().splitlines()
        check(out.returncode == 0,
              "example consumer exits 0 (stderr: %s)" % out.stderr.strip()[-200:])
        check(len(lines) == 5, "five readings printed (%d)" % len(lines))
        pat = re.compile(r"^reading/home seq=(\d+) meter=home net=(-?[0-9.]+) W "
                         r"import_t1=([0-9.]+) kWh$")
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
        p.stop()


if __name__ == "__main__":
    sys.exit(mptest.script_main(ck, main, print_tb=True))
