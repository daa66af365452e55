#!/usr/bin/python3
"""Messages per second from the bus to a local mosquitto through meterpipe-mqtt, next to the
broker's own client (`mosquitto_pub -l`) fed the same payloads, at QoS 0 and 1; and the
mqtt worker's memory (PSS). Prints figures; not a pass/fail test.

Per run, one fresh mosquitto on a free 127.0.0.1 port (tests/integration/mqtt_broker.py):
  mosquitto_pub    N payloads (one captured state, 36 values) piped into `mosquitto_pub -l`;
                   `mosquitto_sub -C N -F %U` stamps them. Rate = messages / (last stamp -
                   first stamp).
  meterpipe-mqtt   right after: bench/mqtt_feeder plays "process" and offers readings (36
                   values, like a DSMR 5 telegram) round-robin over METERS meters at --offer
                   (1.25) times the rate mosquitto_pub just reached, so the worker has more
                   than it can send without the feeder flooding the machine; meterpipe-mqtt
                   (run alone, not under the supervisor) turns each into a
                   <base>/<meter>/state JSON, counted the same way. What the worker cannot
                   send in time is coalesced (the latest state per meter) and counted as
                   dropped. Pairs are repeated (--repeat) as the machine's load moves.
PSS: /proc/<pid>/smaps_rollup of the worker after the run (Pss_Anon = its own heap and
stacks, beyond the shared libraries).

usage: bench/bench_mqtt.py [-n 20000] [--meters 50] [--offer 1.25] [--repeat 2] [--flood]
                          [--bin-dir DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import mptest  # noqa: E402
import mqtt_broker  # noqa: E402


RECEIVE_BATCH = 256  # bus::Subscriber::Options::receive_batch (bus/bus.h)


def smaps(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        pass
    return out


def rate_of(sub, out_path, timeout=90):
    """Waits for a `mosquitto_sub -F %U` started by start_sub; (messages, messages/s between
    the first and the last arrival, stamped by mosquitto_sub itself)."""
    try:
        sub.wait(timeout)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.wait()
    with open(out_path) as f:
        stamps = [float(x) for x in f.read().split()]
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return len(stamps), 0.0
    return len(stamps), (len(stamps) - 1) / (stamps[-1] - stamps[0])


def start_sub(port, topic, qos, n, out_path=None, idle_s=10):
    """mosquitto_sub ending after n messages or idle_s s; arrival stamps (%U) to out_path."""
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos),
            "-C", str(n), "-W", str(idle_s + 60)]
    if out_path:
        args += ["-F", "%U"]
    p = subprocess.Popen(args, stdout=open(out_path, "w") if out_path else subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(0.5)  # let it subscribe (the rates below are between arrivals: no such wait)
    return p


def worker_health(cfg, mp):
    r = subprocess.run([mp, "tap", "-c", cfg, "health/mqtt", "--count", "1"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    try:
        return json.loads(r.stdout.splitlines()[0])["envelope"]["health"]
    except (ValueError, IndexError, KeyError):
        return {}


def run_worker(bin_dir, bench_dir, qos, n, meters, count, rate=0, ha=False):
    broker = mqtt_broker.Broker(prefix="mpbench.mqtt.")
    d = tempfile.mkdtemp(prefix="mpbench.mq.", dir="/tmp")
    run_dir = os.path.join(d, "run")
    os.makedirs(run_dir)
    cfg = os.path.join(d, "meterpipe.toml")
    worker = feeder = None
    try:
        broker.start()
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s/state"\n\n' % (run_dir, d))
            for i in range(meters):
                f.write('[[meter]]\nname = "m%d"\nsource = "simulate"\n\n' % i)
            f.write('[upload]\nenabled = false\n\n[mqtt]\nenabled = true\n'
                    'url = "mqtt://127.0.0.1:%d"\nbase_topic = "bench"\nqos = %d\n'
                    'retain = false\nhomeassistant = %s\n'
                    % (broker.port, qos, "true" if ha else "false"))
        feeder = subprocess.Popen([os.path.join(bench_dir, "mqtt_feeder"), run_dir, str(meters),
                                   str(count), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        assert feeder.stdout.readline().strip() == b"ready"
        env = dict(mptest.ENV)
        worker = subprocess.Popen([os.path.join(bin_dir, "meterpipe-mqtt"), "--config", cfg],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        status = mqtt_broker.Client(broker.port, ["bench/status"])
        ok = status.wait(lambda: status.last("bench/status") == "online", 20)
        status.close()
        if not ok:
            raise RuntimeError("meterpipe-mqtt did not connect")
        time.sleep(1.0)  # the worker's bus subscription settles (ZeroMQ connects lazily)
        stamps = os.path.join(d, "stamps")
        sub = start_sub(broker.port, "bench/+/state", qos, n, stamps)
        one = start_sub(broker.port, "bench/m0/state", qos, 1)
        feeder.stdin.write(b"go\n")
        feeder.stdin.flush()
        got, rate = rate_of(sub, stamps)
        payload = one.communicate(timeout=30)[0].splitlines()[0]
        sent = feeder.stdout.readline().decode().strip()
        health = worker_health(cfg, os.path.join(bin_dir, "meterpipe"))
        mem = smaps(worker.pid)
        c = dict(health.get("counters", {}))
        c.update({"g_" + k: v for k, v in health.get("gauges", {}).items()})
        return got, rate, sent, c, mem, payload
    finally:
        for p in (worker, feeder):
            if p is not None:
                if p is feeder and p.poll() is None:
                    try:
                        p.stdin.close()
                    except OSError:
                        pass
                mptest.kill_proc(p)
        broker.remove()
        shutil.rmtree(d, ignore_errors=True)


def run_pub(qos, n, payload):
    broker = mqtt_broker.Broker(prefix="mpbench.mqtt.")
    try:
        broker.start()
        stamps = os.path.join(broker.dir, "stamps")
        sub = start_sub(broker.port, "bench/m0/state", qos, n, stamps)
        pub = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t",
                                "bench/m0/state", "-q", str(qos), "-l"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pub.stdin.write((payload + b"\n") * n)
        pub.stdin.close()
        got, rate = rate_of(sub, stamps)
        pub.wait(30)
        return got, rate
    finally:
        broker.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="messages counted per run")
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--offer", type=float, default=1.25,
                    help="the feeder's rate as a multiple of mosquitto_pub's measured rate")
    ap.add_argument("--repeat", type=int, default=2, help="pub/worker pairs per QoS")
    ap.add_argument("--flood", action="store_true",
                    help="also the old burst: 3N readings as fast as the feeder can")
    ap.add_argument("--bin-dir", default=mptest.BIN_DIR)
    a = ap.parse_args()
    bench_dir = os.path.join(os.path.dirname(a.bin_dir), "bench")
    print("%d state messages per run, %d meters; per QoS, %d times: mosquitto_pub -l, then "
          "the feeder at %.2fx its rate into meterpipe-mqtt; load average %s"
          % (a.n, a.meters, a.repeat, a.offer, os.getloadavg()[0]))
    # one real state payload (36 values) for mosquitto_pub
    payload = run_worker(a.bin_dir, bench_dir, 0, 50, 1, 50, rate=100)[5]
    print("%-4s %16s %16s %7s  %s" % ("QoS", "meterpipe-mqtt/s", "mosquitto_pub/s", "ratio",
                                      "worker"))
    for qos in (0, 1):
        ratios = []
        for _ in range(max(1, a.repeat)):
            pub_got, pub_rate = run_pub(qos, a.n, payload)
            offer = a.offer * pub_rate
            got, rate, sent, c, mem, _ = run_worker(a.bin_dir, bench_dir, qos, a.n, a.meters,
                                                    int(a.n * a.offer * 1.5), rate=offer)
            ratios.append(rate / pub_rate if pub_rate else 0)
            print("%-4d %16.0f %16.0f %7.2f  offered %.0f/s; received %d (pub: %d); published "
                  "%s, dropped %s, bus_lost %s; PSS %.1f MB (anon %.1f); payload %d B"
                  % (qos, rate, pub_rate, ratios[-1], offer, got, pub_got, c.get("published"),
                     c.get("dropped"), c.get("bus_lost"), mem.get("Pss", 0) / 1024,
                     mem.get("Pss_Anon", 0) / 1024, len(payload)))
        print("QoS %d: ratio %s (median %.2f, goal >= 0.9)"
              % (qos, " ".join("%.2f" % r for r in ratios), sorted(ratios)[len(ratios) // 2]))
        if a.flood:
            got, rate, sent, c, mem, _ = run_worker(a.bin_dir, bench_dir, qos, a.n, a.meters,
                                                    3 * a.n)
            print("     flood (3N readings at once): %.0f/s, received %d; %s; dropped %s, "
                  "bus_lost %s; PSS %.1f MB (the worker takes the bus %d messages at a time, "
                  "the rest waits in its ZeroMQ queue, beyond which it is lost: bus_lost)"
                  % (rate, got, sent, c.get("dropped"), c.get("bus_lost"),
                     mem.get("Pss", 0) / 1024, RECEIVE_BATCH))
    # memory in normal use: one DSMR-like meter at 10 readings/s, discovery on
    got, rate, sent, c, mem, _ = run_worker(a.bin_dir, bench_dir, 0, 150, 1, 150, rate=10,
                                            ha=True)
    print("normal use (1 meter, 10 readings/s for 15 s, discovery on): worker PSS %.1f MB, "
          "of it Pss_Anon %.1f MB (heap and stacks, beyond the shared libraries), RSS %.1f MB; "
          "published %s" % (mem.get("Pss", 0) / 1024, mem.get("Pss_Anon", 0) / 1024,
                            mem.get("Rss", 0) / 1024, c.get("published")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
