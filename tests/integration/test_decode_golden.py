#!/usr/bin/env python3
"""`meterpipe decode dsmr|mbus` on every frame file of tests/data gives the recorded output.

The recorded outputs (tests/data/golden/, one file per input: exit code, stdout) were made
by the build before the protocols/ move (docs/ARCHITECTURE.md, "Protocols"), so a move or a
refactor that changes a single byte of what a decoder says fails here. A change of a
decoder's rules changes the golden files in the same commit, with the reason in its message:
    tests/integration/test_decode_golden.py --update
"""
import os
import subprocess
import sys

import mptest

GOLDEN_DIR = os.path.join(mptest.DATA_DIR, "golden")
# (protocol, folder under tests/data, file endings, extra arguments)
SETS = [
    ("dsmr", "dsmr", (".txt",), []),
    ("dsmr", "dsmr", (".dlms",), ["--key-file", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
    ("mbus", "mbus", (".hex",), []),
]


def inputs():
    for proto, sub, endings, extra in SETS:
        top = os.path.join(mptest.DATA_DIR, sub)
        for root, _dirs, files in os.walk(top):
            for f in sorted(files):
                if f.endswith(endings):
                    path = os.path.join(root, f)
                    yield proto, path, extra


def run_decode(proto, path, extra):
    r = subprocess.run([mptest.MP, "decode", proto, *extra, path], capture_output=True,
                       env=mptest.ENV, timeout=30)
    return b"exit %d\n" % r.returncode + r.stdout


def golden_path(path):
    rel = os.path.relpath(path, mptest.DATA_DIR)
    return os.path.join(GOLDEN_DIR, rel + ".out")


def main():
    update = "--update" in sys.argv[1:]
    ck = mptest.Checker()
    count = 0
    for proto, path, extra in inputs():
        count += 1
        got = run_decode(proto, path, extra)
        gp = golden_path(path)
        if update:
            os.makedirs(os.path.dirname(gp), exist_ok=True)
            with open(gp, "wb") as f:
                f.write(got)
            continue
        try:
            with open(gp, "rb") as f:
                want = f.read()
        except FileNotFoundError:
            ck.check(False, f"{os.path.relpath(path, mptest.DATA_DIR)}: no golden output "
                            f"(run {sys.argv[0]} --update and review the diff)")
            continue
        ck.check(got == want, f"{os.path.relpath(path, mptest.DATA_DIR)}: decode {proto} output "
                              f"identical to the recorded one")
    ck.check(count > 100, f"{count} frame files decoded")
    if update:
        print(f"updated {count} golden outputs in {GOLDEN_DIR}")
    sys.exit(ck.finish())


if __name__ == "__main__":
    main()
