#!/usr/bin/python3
"""Example bus consumer in Python: prints every reading meterpipe publishes.

Needs Debian's python3-zmq and python3-protobuf, and protoc (protobuf-compiler) once to
generate the Python module from proto/meterpipe.proto (done here on first use, into a cache
directory). This is the pattern for your own consumers: connect a SUB socket to the
publisher's ipc endpoint, subscribe to a topic prefix, parse the second frame as an
Envelope. Sequence numbers count per topic: a jump means you missed messages.

    scripts/examples/tap_readings.py --run-dir /run/meterpipe [--count N]
"""
import argparse
import importlib
import os
import subprocess
import sys

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))


def load_schema():
    """Imports meterpipe_pb2, generating it from the .proto when needed."""
    proto_dir = os.environ.get("MP_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")
    if not os.path.exists(os.path.join(proto_dir, "meterpipe.proto")):
        # installed: <prefix>/share/meterpipe/examples/tap_readings.py, the .proto one up
        proto_dir = os.path.normpath(os.path.join(HERE, ".."))
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "meterpipe-python")
    os.makedirs(cache, exist_ok=True)
    src = os.path.join(proto_dir, "meterpipe.proto")
    out = os.path.join(cache, "meterpipe_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + cache, "-I", proto_dir, src], check=True)
    sys.path.insert(0, cache)
    return importlib.import_module("meterpipe_pb2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="/run/meterpipe")
    ap.add_argument("--publisher", default="process")
    ap.add_argument("--prefix", default="reading/")
    ap.add_argument("--count", type=int, default=0, help="stop after N readings")
    args = ap.parse_args()

    pb = load_schema()
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.connect("ipc://%s/%s.pub" % (args.run_dir, args.publisher))
    sock.setsockopt_string(zmq.SUBSCRIBE, args.prefix)
    last_seq = {}
    n = 0
    while args.count == 0 or n < args.count:
        topic, payload = sock.recv_multipart()
        env = pb.Envelope()
        env.ParseFromString(payload)
        key = (topic, env.instance_id)
        if key in last_seq and env.seq != last_seq[key] + 1:
            print("# missed %d message(s) on %s" % (env.seq - last_seq[key] - 1, topic.decode()),
                  file=sys.stderr)
        last_seq[key] = env.seq
        if env.WhichOneof("body") != "reading":
            continue
        r = env.reading
        values = {v.name: (v.number if v.WhichOneof("value") == "number" else v.text)
                  for v in r.values}
        print("%s seq=%d meter=%s net=%s W import_t1=%s kWh" % (
            topic.decode(), env.seq, r.meter, values.get("power_net_w"),
            values.get("energy_import_t1_kwh")), flush=True)
        n += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
