#!/usr/bin/python3
"""Homie 4 devices and per-value topics of the mqtt worker (issue 16), on a real mosquitto.

`meterpipe run` with a simulated DSMR meter, a simulated relay and [mqtt] homie = true,
per_value_topics = true, commands = true. A paho client checks:
  - per-value topics: <base>/home/<value> carry the same numbers as the JSON state sent
    just before them;
  - Homie 4 (convention v4.0.0): homie/<device>/$homie = 4.0.0, $name, $state = ready,
    $nodes, $extensions; each node's $name, $type and $properties; each property's $name
    and $datatype (float with $unit for numbers), every topic level in Homie's ID format;
    property values numeric for floats; the relay's state is a settable boolean;
  - commands through Homie: relay-boiler/state/set = true switches the relay on (seen in
    `meterpipe status` and on the property), override/set = auto gives it back to the
    rules; a bad payload switches nothing and leaves a log line;
  - nodes of meters and relays no longer configured (left retained by an earlier run: the
    test publishes them before the start) are cleared: empty retained payloads on each of
    their topics, so the broker holds none of them; the configured nodes stay;
  - the Last Will: kill -9 of the mqtt worker -> $state = lost; the restart -> ready; a clean
    stop -> disconnected.

Environment (set by ctest): MP_BIN_DIR. Needs mosquitto and python3-paho-mqtt.
"""
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
import mqtt_broker  # noqa: E402
from mptest import wait_for  # noqa: E402

ck = mptest.Checker()
check = ck.check

DEV = "homie/mp-homie"
HOMIE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
DATATYPES = {"integer", "float", "boolean", "string", "enum", "color", "datetime", "duration"}
# what an earlier run with a meter "old meter" and a relay "gone" left retained on the broker
STALE = {
    "old-meter/$name": "old meter", "old-meter/$type": "DSMR",
    "old-meter/$properties": "power-net-w,gas-m3",
    "old-meter/power-net-w": "812.5", "old-meter/power-net-w/$name": "Power net",
    "old-meter/power-net-w/$datatype": "float", "old-meter/power-net-w/$unit": "W",
    "old-meter/power-net-w/$settable": "false", "old-meter/power-net-w/$retained": "true",
    "old-meter/gas-m3": "1.25", "old-meter/gas-m3/$datatype": "float",
    "relay-gone/$name": "Relay gone", "relay-gone/$type": "relay (sim output)",
    "relay-gone/$properties": "state,override", "relay-gone/state": "true",
    "relay-gone/state/$datatype": "boolean", "relay-gone/state/$settable": "true",
    "relay-gone/override/$format": "auto,on,off",
}
STALE_NODES = ("old-meter/", "relay-gone/")


def body(port):
    # on_below_w far below anything the simulator sends: in auto the relay stays off
    return ('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = 5\n\n'
            '[upload]\nenabled = false\n\n'
            '[[relay]]\nname = "boiler"\nmeter = "home"\non_below_w = -1000000\noff_above_w = -999000\n'
            'min_on_s = 0\nmin_off_s = 0\non_delay_s = 0\noff_delay_s = 0\n'
            'max_switches_per_hour = 1000\n[relay.output]\ntype = "sim"\n\n'
            '[mqtt]\nenabled = true\nurl = "mqtt://127.0.0.1:%d"\nclient_id = "mp-homie"\n'
            'homeassistant = false\nper_value_topics = true\nhomie = true\ncommands = true\n'
            % port)


def relay_row(p):
    """(state, mode, override) of relay boiler from `meterpipe status` (None when unknown)."""
    r = mptest.run_cli(["status", "--run-dir", p.run_dir], timeout=10)
    for line in r.stdout.decode(errors="replace").splitlines():
        f = line.split()
        if f and f[0] == "boiler" and len(f) >= 4:
            return f[1], f[2], f[3]
    return None


def wait_row(p, pred, timeout=15):
    last = [None]

    def ok():
        last[0] = relay_row(p)
        return last[0] is not None and pred(last[0])
    wait_for(ok, timeout, 0.2)
    return last[0]


def mqtt_pid(p):
    w = p.worker("mqtt")
    pid = w.get("pid", 0) if w else 0
    return pid if isinstance(pid, int) and pid > 0 else None


def test_per_value(sub):
    check(sub.wait(lambda: len(sub.messages("meterpipe/home/state")) >= 3, 30),
          "states arrive")
    msgs = sub.messages("meterpipe/home/")
    # the per-value topics of a state follow it, in the order of the reading's values
    groups, bad = 0, []
    for i, m in enumerate(msgs[:-40]):
        if m.topic != "meterpipe/home/state":
            continue
        d = json.loads(m.payload)
        vals = {k: v for k, v in d.items()
                if k not in ("timestamp", "meter_time", "receive_time", "time_ns")}
        after = {x.topic.split("/", 2)[2]: x.payload for x in msgs[i + 1:i + 1 + len(vals)]}
        for k, v in vals.items():
            got = after.get(re.sub(r"[^A-Za-z0-9_-]", "_", k))
            if isinstance(v, (int, float)):
                if got is None or float(got) != float(v):
                    bad.append((k, v, got))
            elif got != v:
                bad.append((k, v, got))
        groups += 1
    check(groups >= 2 and not bad, "per-value topics meterpipe/home/<value> equal the state's "
          "values (%d states compared)" % groups, bad[:5])
    check(sub.last("meterpipe/home/energy_import_t1_kwh") is not None and
          float(sub.last("meterpipe/home/energy_import_t1_kwh")) > 0,
          "a plain number on meterpipe/home/energy_import_t1_kwh")


def homie_tree(sub):
    """{topic below DEV/: payload} of the last message of each topic."""
    out = {}
    for m in sub.messages(DEV + "/"):
        t = m.topic[len(DEV) + 1:]
        if not t.startswith(STALE_NODES):  # test_stale_nodes looks at those
            out[t] = m.payload
    return out


def test_homie_device(sub):
    check(sub.wait(lambda: sub.last(DEV + "/$state") == "ready", 30), "$state ready",
          sub.last(DEV + "/$state"))
    # every property of the meter seen: wait until its values came once more
    sub.wait(lambda: len([t for t in homie_tree(sub) if t.startswith("home/")]) >= 100, 10)
    t = homie_tree(sub)
    check(t.get("$homie") == "4.0.0", "$homie 4.0.0", t.get("$homie"))
    check(t.get("$name"), "$name", t.get("$name"))
    check("$extensions" in t, "$extensions present")
    nodes = (t.get("$nodes") or "").split(",")
    check(set(nodes) == {"home", "relay-boiler"}, "$nodes: the meter and the relay", nodes)
    bad = []
    for n in nodes:
        for a in ("$name", "$type", "$properties"):
            if not t.get(n + "/" + a):
                bad.append((n, a))
        for pid in (t.get(n + "/$properties") or "").split(","):
            if not HOMIE_ID.match(pid):
                bad.append((n, pid, "id format"))
            dt = t.get("%s/%s/$datatype" % (n, pid))
            if dt not in DATATYPES:
                bad.append((n, pid, "$datatype", dt))
            if not t.get("%s/%s/$name" % (n, pid)):
                bad.append((n, pid, "$name"))
            v = t.get("%s/%s" % (n, pid))
            if dt == "float":
                try:
                    float(v)
                except (TypeError, ValueError):
                    bad.append((n, pid, "value", v))
    levels = [lv for topic in t for lv in topic.split("/") if not lv.startswith("$")]
    bad += [("level", lv) for lv in levels if lv != "set" and not HOMIE_ID.match(lv)]
    props = (t.get("home/$properties") or "").split(",")
    check(len(props) >= 20 and not bad, "%d meter properties: nodes and properties complete, "
          "ids in Homie's format, float values numeric" % len(props), bad[:8])
    check(t.get("home/energy-import-t1-kwh/$unit") == "kWh" and
          t.get("home/power-net-w/$unit") == "W" and
          t.get("home/gas-m3/$unit") == "m³", "units from the value table",
          [t.get("home/%s/$unit" % x) for x in ("energy-import-t1-kwh", "power-net-w", "gas-m3")])
    check(t.get("relay-boiler/state/$datatype") == "boolean" and
          t.get("relay-boiler/state/$settable") == "true", "relay state: settable boolean")
    check(t.get("relay-boiler/override/$format") == "auto,on,off", "override: enum auto,on,off")
    retained = mqtt_broker.retained(broker_port[0], DEV + "/#")
    check(retained.get(DEV + "/$state") == "ready" and len(retained) >= len(t) - 2,
          "Homie topics are retained (%d of %d)" % (len(retained), len(t)))


def test_stale_nodes(p, sub):
    check(sub.wait(lambda: all(sub.last(DEV + "/" + t) == "" for t in STALE), 30),
          "every topic of the removed nodes cleared (an empty payload)",
          [t for t in STALE if sub.last(DEV + "/" + t) != ""][:5])
    check(p.wait_log(r"mqtt: info: clearing the Homie node %s/old-meter" % DEV, 5),
          "the clearing of the removed meter's node logged")
    retained = mqtt_broker.retained(broker_port[0], DEV + "/#")
    left = [t for t in retained if t[len(DEV) + 1:].startswith(STALE_NODES)]
    check(not left, "the broker holds nothing of the removed nodes", left[:5])
    check(retained.get(DEV + "/home/$properties") and
          retained.get(DEV + "/relay-boiler/$properties"), "the configured nodes stay retained")


def test_homie_commands(p, sub):
    check(sub.wait(lambda: sub.last(DEV + "/relay-boiler/state") == "false", 20),
          "relay state false at first", sub.last(DEV + "/relay-boiler/state"))
    sub.publish(DEV + "/relay-boiler/state/set", "true")
    row = wait_row(p, lambda r: r[0] == "on")
    check(row and row[:3] == ("on", "manual", "on"), "state/set true -> relay on (override)",
          row)
    check(sub.wait(lambda: sub.last(DEV + "/relay-boiler/state") == "true", 10),
          "the state property says true")
    check(sub.wait(lambda: sub.last(DEV + "/relay-boiler/override") == "on", 10),
          "the override property says on", sub.last(DEV + "/relay-boiler/override"))
    sub.publish(DEV + "/relay-boiler/override/set", "auto")
    row = wait_row(p, lambda r: r[0] == "off" and r[1] != "manual" and r[2] == "-", 30)
    check(row and row[0] == "off" and row[2] == "-", "override/set auto -> the rules again", row)
    before = p.counters("mqtt").get("commands_refused", 0)
    sub.publish(DEV + "/relay-boiler/state/set", "maybe")
    n = p.wait_counter("mqtt", "commands_refused", lambda v: v >= before + 1, 20)
    check(n >= before + 1, "a bad payload is refused (counted)", n)
    check(p.wait_log(r"mqtt: warn: ignored a command on %s/relay-boiler/state/set: state "
                     r"wants true or false" % DEV, 5), "a bad payload logged")
    row = relay_row(p)
    check(row and row[0] == "off", "nothing switched", row)


def test_homie_will(p, sub):
    pid = mqtt_pid(p)
    check(pid is not None, "mqtt worker pid from status", pid)
    if pid is None:
        return
    t0 = mptest.time.monotonic()
    os.kill(pid, signal.SIGKILL)
    check(sub.wait(lambda: any(m.payload == "lost"
                               for m in sub.messages(DEV + "/$state", since=t0)), 60),
          "kill -9 of the mqtt worker -> $state lost (Last Will)")
    t1 = mptest.time.monotonic()
    check(sub.wait(lambda: any(m.payload == "ready"
                               for m in sub.messages(DEV + "/$state", since=t1)), 30),
          "the restarted worker: $state ready again")
    # The stop comes right after the restarted worker said ready (the acknowledgements of
    # what it just sent are still on their way): its goodbye must still be a clean
    # DISCONNECT. (When libmosquitto closed the socket with an acknowledgement unread, the
    # kernel sent a reset and mosquitto published the Will after the goodbye: half the runs.)
    log_before = len(broker_log())
    p.stop(remove=False)
    ended = wait_for(lambda: re.search(r"Client mp-homie-homie (disconnected|closed)|"
                                       r"mp-homie-homie.*(error|timeout)|"
                                       r"Socket error on client mp-homie-homie",
                                       broker_log()[log_before:]), 15)
    after = broker_log()[log_before:]
    check(ended and "Received DISCONNECT from mp-homie-homie" in after,
          "a clean stop soon after the restart: the Homie client's DISCONNECT reaches the broker",
          [l for l in after.splitlines() if "mp-homie-homie" in l and "PUBLISH" not in l][-5:])
    check(sub.wait(lambda: sub.last(DEV + "/$state") == "disconnected", 10),
          "a clean stop -> $state disconnected",
          (sub.last(DEV + "/$state"), [(m.payload, round(m.time - t1, 2))
                                       for m in sub.messages(DEV + "/$state", since=t1)],
           p.log_matching(r"^(supervisor|mqtt): (warn|error)")))


broker_port = [0]
broker_ref = [None]


def broker_log():
    return broker_ref[0].log() if broker_ref[0] else ""


def main():
    broker = mqtt_broker.Broker()
    p = sub = None
    try:
        broker.start()
        broker_port[0] = broker.port
        broker_ref[0] = broker
        sub = mqtt_broker.Client(broker.port, ["homie/#", "meterpipe/#"])
        for t, v in STALE.items():
            sub.publish(DEV + "/" + t, v, retain=True)
        p = mptest.Pipeline(body(broker.port), prefix="mpmq.homie.")
        p.start()
        check(p.wait_running(30) is not None, "pipeline with homie = true running")

        def per_value_topics():
            test_per_value(sub)

        def homie_device():
            test_homie_device(sub)

        def stale_nodes_cleared():
            test_stale_nodes(p, sub)

        def homie_commands():
            test_homie_commands(p, sub)

        def homie_last_will():
            test_homie_will(p, sub)
        ck.run(per_value_topics, homie_device, stale_nodes_cleared, homie_commands,
               homie_last_will)
        bad = [line for line in p.log() if "mqtt: error" in line]
        check(not bad, "no error lines from the mqtt worker", bad[:3])
    finally:
        if sub:
            sub.close()
        if p:
            p.stop()
        broker.remove()
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
