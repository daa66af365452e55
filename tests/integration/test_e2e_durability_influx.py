#!/usr/bin/python3
"""Durability under faults, target InfluxDB 1.6 (issue 15; docs/DURABILITY.md).

For 60 s, with three seeds in parallel (MP_FAULT_SEEDS="a,b,c" replays them): kill -9 of
upload, process and both at random moments, influxd hung (SIGSTOP) and later down, one kill -9
of the supervisor and a restart. Then every frame acquire published must be in InfluxDB once,
with the telegram's values. The harness is tests/integration/durability.py. About 2.5 minutes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability  # noqa: E402

if __name__ == "__main__":
    sys.exit(durability.main("influxdb1"))
