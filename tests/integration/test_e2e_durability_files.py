#!/usr/bin/python3
"""Durability under faults, target = "file" (daily line-protocol files; issue 15).

For 60 s, with three seeds in parallel (MP_FAULT_SEEDS="a,b,c" replays them): kill -9 of
upload, process and both at random moments, one kill -9 of the supervisor and a restart. Then
every frame acquire published must be in the day files exactly once (a crash between an append
and the cursor save must not add a line twice), with the telegram's values. The harness is
tests/integration/durability.py. About 2 minutes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability  # noqa: E402

if __name__ == "__main__":
    sys.exit(durability.main("file"))
