#!/usr/bin/python3
"""End-to-end test of the mqtt worker (issue 16) against a real mosquitto.

`meterpipe run` with a simulated DSMR 5 meter, a simulated relay and [mqtt] enabled on a
mosquitto this test starts on a free 127.0.0.1 port. A paho-mqtt client checks:
  - every reading on the bus (`meterpipe tap reading/`) appears on <base>/home/state with
    equal values and the meter's timestamp;
  - Home Assistant discovery: valid JSON, the keys HA needs, classes and units as the value
    table says, unique_ids unique and unchanged after a restart of meterpipe; HA's birth
    message (homeassistant/status = online) makes the worker send them again;
  - the Last Will: kill -9 of the mqtt worker -> "offline" from the broker, the supervisor's
    restart -> "online";
  - a relay removed from the config gets its retained discovery configs cleared;
  - interval_s = 2: at most one state per 2 s, the newest reading.

Environment (set by ctest): MP_BIN_DIR, MP_SOURCE_DIR. Needs mosquitto and python3-paho-mqtt.
Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
import mqtt_broker  # noqa: E402
from mptest import note, wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

# The value table the worker must follow (mqtt/value_classes.cpp), for the names the DSMR
# simulator sends: (device_class, state_class, unit).
EXPECTED = {
    "energy_import_t1_kwh": ("energy", "total_increasing", "kWh"),
    "energy_import_t2_kwh": ("energy", "total_increasing", "kWh"),
    "energy_export_t1_kwh": ("energy", "total_increasing", "kWh"),
    "energy_export_t2_kwh": ("energy", "total_increasing", "kWh"),
    "energy_import_kwh": ("energy", "total_increasing", "kWh"),
    "gas_m3": ("gas", "total_increasing", "m³"),
    "power_net_w": ("power", "measurement", "W"),
    "power_import_w": ("power", "measurement", "W"),
    "power_l1_w": ("power", "measurement", "W"),
    "voltage_l1_v": ("voltage", "measurement", "V"),
    "current_l1_a": ("current", "measurement", "A"),
}


def body(port, relays=("boiler",), extra=""):
    s = ('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = 5\n\n'
         '[upload]\nenabled = false\n\n')
    for r in relays:
        s += '[[relay]]\nname = "%s"\nmeter = "home"\n[relay.output]\ntype = "sim"\n\n' % r
    s += ('[mqtt]\nenabled = true\nurl = "mqtt://127.0.0.1:%d"\nclient_id = "mp-test"\n%s\n'
          % (port, extra))
    return s


def write_config(p, text):
    """Rewrites the pipeline's config (same run_dir and state_dir) for its next start."""
    with open(p.cfg) as f:
        head = f.read().split("\n\n", 1)[0]
    with open(p.cfg, "w") as f:
        f.write(head + "\n\n" + text)


def mqtt_pid(p):
    """The mqtt worker's pid from status (None unless it is a real pid > 0)."""
    w = p.worker("mqtt")
    pid = w.get("pid", 0) if w else 0
    return pid if isinstance(pid, int) and pid > 0 else None


def configs(msgs):
    """{topic: payload} of discovery config messages (the last of each topic)."""
    out = {}
    for m in msgs:
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config"):
            out[m.topic] = m.payload
    return out


def check_discovery(cfgs):
    """Checks every config; returns {topic: unique_id}."""
    ids = {}
    bad = []
    for topic, payload in cfgs.items():
        try:
            d = json.loads(payload)
        except ValueError:
            bad.append((topic, "not JSON"))
            continue
        for k in ("name", "unique_id", "state_topic", "availability_topic"):
            if not isinstance(d.get(k), str) or not d[k]:
                bad.append((topic, "no " + k))
        dev = d.get("device", {})
        if not dev.get("identifiers") or not dev.get("name"):
            bad.append((topic, "device without identifiers/name"))
        if "/sensor/meterpipe_home/" in topic:
            value = topic.split("/")[3]
            if d.get("state_topic") != "meterpipe/home/state":
                bad.append((topic, "state_topic " + str(d.get("state_topic"))))
            if "value_json['%s']" % value not in d.get("value_template", ""):
                bad.append((topic, "value_template " + str(d.get("value_template"))))
            if value in EXPECTED:
                got = (d.get("device_class"), d.get("state_class"), d.get("unit_of_measurement"))
                if got != EXPECTED[value]:
                    bad.append((topic, "classes %s, want %s" % (got, EXPECTED[value])))
        ids[topic] = d.get("unique_id")
    check(not bad, "%d discovery configs are JSON with the keys HA needs and the table's "
          "classes/units" % len(cfgs), bad[:5])
    uids = list(ids.values())
    check(len(set(uids)) == len(uids), "unique_ids are unique", uids)
    return ids


def test_states_and_discovery(broker, p):
    sub = mqtt_broker.Client(broker.port, ["meterpipe/#", "homeassistant/#"])
    tap = p.start_tap(["reading/"])
    try:
        check(sub.wait(lambda: sub.last("meterpipe/status") == "online", 20),
              "status online (retained) after the worker connected")
        check(sub.wait(lambda: len(sub.messages("meterpipe/home/state")) >= 15, 30),
              "state messages arrive", len(sub.messages("meterpipe/home/state")))
        states = {}
        for m in sub.messages("meterpipe/home/state"):
            d = json.loads(m.payload)
            states[mptest.iso_to_ns(d["receive_time"]) // 1000000] = d
        readings = [mptest.reading_of(m) for m in tap.messages("reading/home")]
        lo, hi = min(states), max(states)
        window = [r for r in readings
                  if lo <= int(r.get("receive_time_ns", 0)) // 1000000 <= hi]
        missing, differ = [], []
        for r in window:
            key = int(r["receive_time_ns"]) // 1000000
            st = states.get(key)
            if st is None:
                missing.append(key)
                continue
            want = mptest.values_by_name(r)
            got = {k: v for k, v in st.items()
                   if k not in ("timestamp", "meter_time", "receive_time", "time_ns")}
            if got != want:
                differ.append((key, {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                                     if want.get(k) != got.get(k)}))
            mt = int(r.get("meter_time_ns", 0))
            if mt and mptest.iso_to_ns(st["meter_time"]) != mt:
                differ.append((key, "meter_time"))
        check(len(window) >= 10 and not missing,
              "every reading on the bus (%d in the window) is on meterpipe/home/state"
              % len(window), missing[:5])
        check(not differ, "state values equal the bus readings, with the meter's timestamp",
              differ[:3])

        cfgs = configs(sub.messages("homeassistant/"))
        check(sub.wait(lambda: len(configs(sub.messages("homeassistant/"))) >= 20, 10),
              "discovery configs for the meter's values and the relay")
        cfgs = configs(sub.messages("homeassistant/"))
        ids = check_discovery(cfgs)
        check("homeassistant/switch/meterpipe_relay_boiler/switch/config" in cfgs,
              "the relay is a switch entity")
        sw = json.loads(cfgs.get("homeassistant/switch/meterpipe_relay_boiler/switch/config", "{}"))
        check("command_topic" not in sw, "read-only switch when commands = false", sw)
        check(sub.wait(lambda: sub.last("meterpipe/relay/boiler/state") in ("ON", "OFF"), 10),
              "relay state ON/OFF", sub.last("meterpipe/relay/boiler/state"))
        attrs = json.loads(sub.last("meterpipe/relay/boiler/attributes") or "{}")
        check(attrs.get("mode") and attrs.get("override") == "auto" and "reason" in attrs,
              "relay attributes: mode, override, reason", attrs)
        sensor_uid = json.loads(cfgs["homeassistant/sensor/meterpipe_home/power_net_w/config"])
        check(sensor_uid["device"]["identifiers"] == ["meterpipe_E004000000000001"],
              "device identifiers from the meter's equipment id", sensor_uid["device"])

        # HA's birth message: the configs again
        t0 = mptest.time.monotonic()
        sub.publish("homeassistant/status", "online")
        n = len(cfgs)
        check(sub.wait(lambda: len(configs(sub.messages("homeassistant/", since=t0))) >= n, 10),
              "homeassistant/status = online -> every discovery config sent again",
              len(configs(sub.messages("homeassistant/", since=t0))))
        check(p.wait_counter("mqtt", "ha_births", lambda v: v >= 1, 20) >= 1, "ha_births counted")
        # QoS 0 messages count as in flight until libmosquitto wrote them: with a broker that
        # keeps up, none stay in flight (a lost count would stop publishing at the cap)
        # (counters and gauges travel in mqtt's heartbeat, within 10 s of a change)
        wait_for(lambda: (lambda x: x.get("counters", {}).get("published", 0) >= 50 and
                          x.get("gauges", {}).get("inflight", 1e9) <= 10)(
            p.worker("mqtt") or {}), 20, 0.2)
        w = p.worker("mqtt") or {}
        check(w.get("counters", {}).get("published", 0) >= 50 and
              w.get("gauges", {}).get("inflight", 1e9) <= 10,
              "nothing stays in flight at QoS 0", (w.get("counters"), w.get("gauges")))
        return ids
    finally:
        sub.close()
        tap.stop()


def test_last_will(broker, p):
    sub = mqtt_broker.Client(broker.port, ["meterpipe/status"])
    try:
        sub.wait(lambda: sub.last("meterpipe/status") == "online", 10)
        pid = mqtt_pid(p)
        check(pid is not None, "mqtt worker pid from status", pid)
        if pid is None:
            return
        t0 = mptest.time.monotonic()
        os.kill(pid, signal.SIGKILL)
        check(sub.wait(lambda: any(m.payload == "offline"
                                   for m in sub.messages("meterpipe/status", since=t0)), 60),
              "kill -9 of the mqtt worker -> offline from the broker (Last Will)")
        t1 = max([m.time for m in sub.messages("meterpipe/status", since=t0)
                  if m.payload == "offline"] or [t0])
        check(sub.wait(lambda: any(m.payload == "online"
                                   for m in sub.messages("meterpipe/status", since=t1)), 30),
              "the restarted worker says online again")
    finally:
        sub.close()


def test_restart_and_removed_relay(broker, p, ids_before):
    # same config: unique ids unchanged
    p.stop(remove=False)
    p.start()
    check(p.wait_running(30) is not None, "pipeline running again")
    sub = mqtt_broker.Client(broker.port, ["homeassistant/#"])
    try:
        t0 = mptest.time.monotonic()
        sub.wait(lambda: len(configs(sub.messages("homeassistant/", since=t0))) >= len(ids_before),
                 20)
        after = check_discovery(configs(sub.messages("homeassistant/", since=t0)))
        same = {t: (ids_before.get(t), after.get(t)) for t in ids_before
                if ids_before.get(t) != after.get(t)}
        check(not same and len(after) >= len(ids_before),
              "unique_ids unchanged after a restart", same)
    finally:
        sub.close()
    # the relay removed from the config: its retained configs are cleared at the next start
    p.stop(remove=False)
    write_config(p, body(broker.port, relays=()))
    p.start()
    check(p.wait_running(30) is not None, "pipeline running without the relay")

    def cleared():
        ret = mqtt_broker.retained(broker.port, "homeassistant/#")
        return (not any("relay_boiler" in t for t in ret)) and len(ret) > 0 and ret
    ret = wait_for(cleared, 20, 0.5)
    check(ret, "discovery configs of the removed relay are cleared (retained)",
          sorted(mqtt_broker.retained(broker.port, "homeassistant/#"))[:5])
    check(ret and any("/meterpipe_home/" in t for t in ret), "the meter's configs stay")
    check(p.wait_log(r"mqtt: info: clearing the Home Assistant config .*relay boiler", 5),
          "clearing logged")


def test_interval(broker):
    p = mptest.Pipeline(body(broker.port, extra="interval_s = 2\nbase_topic = \"iv\"\n"
                             "homeassistant = false\n"), prefix="mpmq.iv.")
    sub = mqtt_broker.Client(broker.port, ["iv/home/state"])
    tap = p.start_tap(["reading/"])
    try:
        p.start()
        check(sub.wait(lambda: len(sub.messages("iv/home/state")) >= 4, 40),
              "interval_s = 2: states keep coming", len(sub.messages("iv/home/state")))
        sts = [json.loads(m.payload) for m in sub.messages("iv/home/state")]
        recv = [mptest.iso_to_ns(s["receive_time"]) / 1e9 for s in sts[1:]]  # first: retained
        gaps = [b - a for a, b in zip(recv, recv[1:])]
        # the send times are >= 2 s apart; the readings they carry were at most one reading
        # period (0.2 s) plus the bus latency old
        check(gaps and min(gaps) >= 1.5, "at most one state per meter per 2 s (gaps between "
              "the readings sent: %s)" % ["%.2f" % g for g in gaps], gaps)
        readings = tap.messages("reading/home")
        check(len(readings) >= 3 * len(sts) - 3, "readings were many more than states",
              (len(readings), len(sts)))
        # always the latest: the reading sent is the newest one the bus had before it
        last = sts[-1]
        key = mptest.iso_to_ns(last["receive_time"]) // 1000000
        known = [int(mptest.reading_of(m)["receive_time_ns"]) // 1000000 for m in readings]
        check(key in known, "the state sent is one of the bus readings")
        note("states: %d, readings: %d" % (len(sts), len(readings)))
    finally:
        sub.close()
        tap.stop()
        p.stop()


def main():
    broker = mqtt_broker.Broker()
    p = None
    try:
        broker.start()
        p = mptest.Pipeline(body(broker.port), prefix="mpmq.")
        p.start()
        check(p.wait_running(30) is not None, "pipeline with the mqtt worker running")
        ids = {}

        def states_and_discovery():
            ids.update(test_states_and_discovery(broker, p) or {})

        def last_will():
            test_last_will(broker, p)

        def restart_and_removed_relay():
            test_restart_and_removed_relay(broker, p, ids)

        def interval():
            test_interval(broker)
        ck.run(states_and_discovery, last_will, restart_and_removed_relay, interval)
        bad = [l for l in p.log() if "mqtt: error" in l]
        check(not bad, "no error lines from the mqtt worker", bad[:3])
    finally:
        if p:
            p.stop()
        broker.remove()
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
