#!/usr/bin/python3
"""A stalled MQTT broker must not touch switching relays (issue 16): the meter -> relay
latency of bench/bench_latency.py with [mqtt] enabled on a local mosquitto, once with the
broker running ("normal") and once with the broker frozen by SIGSTOP for the whole measured
run ("stalled"), side by side; and the mqtt worker's RSS during both runs (it must stay
flat: live values only, the latest per topic while the broker does not answer).

Telegrams every --spacing-ms (default 100 ms: 10 readings/s), -n of them per run (default
600: one minute). QoS 1, so unacknowledged messages pile up against max_inflight while the
broker is frozen. Prints figures; not a pass/fail test (tests/integration/
test_e2e_mqtt_broker.py holds the short RSS check).

usage: bench/bench_mqtt_stall.py [-n 600] [--spacing-ms 100] [--bin-dir DIR]
"""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import bench_latency as bl  # noqa: E402
import mqtt_broker  # noqa: E402


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssWatch:
    """Samples the mqtt worker's RSS every second between measure() and done()."""

    def __init__(self, broker, freeze):
        self.broker, self.freeze = broker, freeze
        self.samples = []
        self.stop = threading.Event()
        self.thread = None
        self.health = {}

    def pid(self, cfg):
        st = bl.supervisor_status(cfg) or {}
        for w in st.get("workers", []):
            if w["name"] == "mqtt" and isinstance(w.get("pid"), int) and w["pid"] > 0:
                return w["pid"]
        return None

    def measure(self, cfg):
        pid = self.pid(cfg)
        if self.freeze:
            self.broker.pause()

        def run():
            while pid and not self.stop.is_set():
                r = rss_kb(pid)
                if r:
                    self.samples.append(r)
                self.stop.wait(1.0)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def done(self, cfg):
        self.stop.set()
        if self.thread:
            self.thread.join()
        st = bl.supervisor_status(cfg) or {}
        for w in st.get("workers", []):
            if w["name"] == "mqtt":
                self.health = w
        if self.freeze:
            self.broker.resume()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=600, help="measured telegrams per run")
    ap.add_argument("--spacing-ms", type=float, default=100.0)
    ap.add_argument("--bin-dir", default=None)
    a = ap.parse_args()
    if a.bin_dir:
        bl.BIN = a.bin_dir
        bl.BENCH = os.path.join(os.path.dirname(a.bin_dir), "bench")
    print("meter -> relay latency with [mqtt] on a local mosquitto (qos 1), broker running vs "
          "frozen (SIGSTOP) for the whole run; %d telegrams, one every %.0f ms; load %s"
          % (a.n, a.spacing_ms, bl.loadavg()))
    res = {}
    for label, freeze in (("normal", False), ("stalled", True)):
        broker = mqtt_broker.Broker(prefix="mpbench.stall.")
        broker.start()
        watch = RssWatch(broker, freeze)
        extra = ('[mqtt]\nenabled = true\nurl = "mqtt://127.0.0.1:%d"\nqos = 1\n'
                 'client_id = "mp-bench-stall"\n' % broker.port)
        try:
            r = bl.run_case(label, "file", "sim", a.n, a.spacing_ms, False, extra=extra,
                            hooks={"measure": watch.measure, "done": watch.done})
        finally:
            broker.remove()
        if r is None:
            print("%s: no result" % label)
            continue
        r["rss"] = watch.samples
        r["mqtt"] = watch.health
        res[label] = r
    print()
    for label, r in res.items():
        rss = r["rss"]
        g = r["mqtt"].get("gauges", {})
        c = r["mqtt"].get("counters", {})
        print("%-8s relay on the bus %s" % (label, bl.fmt(r["bus"])))
        at = " ".join("%ds %s" % (i, rss[i]) for i in (0, 10, 30) if i < len(rss))
        print("%-8s mqtt worker RSS kB: %s, end %s (max %s, %d samples); inflight %s, outbox %s, "
              "published %s, dropped %s, restarts %s"
              % ("", at, rss[-1] if rss else "?", max(rss) if rss else "?", len(rss),
                 g.get("inflight"), g.get("outbox"), c.get("published"), c.get("dropped"),
                 r["mqtt"].get("restarts")))
    if "normal" in res and "stalled" in res:
        n, s = res["normal"], res["stalled"]
        n50, s50 = bl.percentile(n["bus"], 50), bl.percentile(s["bus"], 50)
        n99, s99 = bl.percentile(n["bus"], 99), bl.percentile(s["bus"], 99)
        grow = (s["rss"][-1] - s["rss"][0]) if s["rss"] else 0
        late = (s["rss"][-1] - s["rss"][10]) if len(s["rss"]) > 10 else 0
        print()
        print("relay latency p50 normal %.3f ms, stalled broker %.3f ms (x%.2f, goal <= 1.1); "
              "p99 %.3f / %.3f ms (x%.2f)" % (n50, s50, s50 / n50, n99, s99, s99 / n99))
        print("mqtt worker RSS while the broker was frozen: %+d kB over %.0f s, %+d kB after the "
              "first 10 s (the in-flight window fills, then only the latest per topic waits)"
              % (grow, s["dur"], late))
    return 0 if res else 1


if __name__ == "__main__":
    sys.exit(main())
