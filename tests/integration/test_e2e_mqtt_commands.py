#!/usr/bin/python3
"""End-to-end test of relay commands over MQTT (issue 16): <base>/relay/<name>/set.

`meterpipe run` with a simulated DSMR meter, a simulated relay and [mqtt] commands = true on
a real mosquitto. Commands published by a paho client must do what `meterpipe relay NAME
on|off|auto --for` does, through actuate's control socket: ON / OFF / AUTO and "ON 3600" /
{"state":"OFF","for_s":600} switch the relay (seen in `meterpipe status` and on the state
topic); garbage, an unknown relay, and any command while commands = false switch nothing and
leave a (rate-limited) log line.

Environment (set by ctest): MP_BIN_DIR. Needs mosquitto and python3-paho-mqtt.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
import mqtt_broker  # noqa: E402

ck = mptest.Checker()
check = ck.check


def body(port, commands):
    # on_below_w and off_above_w far below anything the simulator sends (it exports at midday):
    # in auto the relay stays off
    return ('[[meter]]\nname = "home"\nsource = "simulate"\nrate_hz = 5\n\n'
            '[upload]\nenabled = false\n\n'
            '[[relay]]\nname = "boiler"\nmeter = "home"\non_below_w = -1000000\noff_above_w = -999000\n'
            'min_on_s = 0\nmin_off_s = 0\non_delay_s = 0\noff_delay_s = 0\n'
            'max_switches_per_hour = 1000\n'
            '[relay.output]\ntype = "sim"\n\n'
            '[mqtt]\nenabled = true\nurl = "mqtt://127.0.0.1:%d"\ncommands = %s\n'
            % (port, "true" if commands else "false"))


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
    mptest.wait_for(ok, timeout, 0.2)
    return last[0]


def test_commands(broker):
    p = mptest.Pipeline(body(broker.port, True), prefix="mpmq.cmd.")
    sub = None
    try:
        p.start()
        check(p.wait_running(30) is not None, "pipeline running")
        sub = mqtt_broker.Client(broker.port, ["meterpipe/relay/#", "meterpipe/status",
                                               "homeassistant/switch/#"])
        check(sub.wait(lambda: sub.last("meterpipe/status") == "online", 20), "worker online")
        sw = sub.wait(lambda: sub.last(
            "homeassistant/switch/meterpipe_relay_boiler/switch/config"), 10)
        sw = json.loads(sw or "{}")
        check(sw.get("command_topic") == "meterpipe/relay/boiler/set",
              "switch entity has the command topic when commands = true", sw)
        row = wait_row(p, lambda r: r[0] == "off")
        check(row and row[0] == "off", "relay off in auto at first", row)

        sub.publish("meterpipe/relay/boiler/set", "ON")
        row = wait_row(p, lambda r: r[0] == "on")
        check(row and row[:3] == ("on", "manual", "on"), "ON -> relay on, manual override",
              row)
        check(sub.wait(lambda: sub.last("meterpipe/relay/boiler/state") == "ON", 10),
              "state topic ON")
        check(sub.wait(lambda: json.loads(sub.last("meterpipe/relay/boiler/attributes") or "{}")
                       .get("override") == "on", 10), "attributes: override on",
              sub.last("meterpipe/relay/boiler/attributes"))

        sub.publish("meterpipe/relay/boiler/set", '{"state":"OFF","for_s":600}')
        row = wait_row(p, lambda r: r[0] == "off")
        check(row and row[:3] == ("off", "manual", "off"), "JSON OFF for 600 s -> relay off",
              row)
        out = mptest.run_cli(["status", "--run-dir", p.run_dir]).stdout.decode()
        m = re.search(r"boiler .*off \((\d+) s left\)", out)
        check(m and 0 < int(m.group(1)) <= 600, "override with its expiry", out[-300:])
        check(sub.wait(lambda: sub.last("meterpipe/relay/boiler/state") == "OFF", 10),
              "state topic OFF")

        sub.publish("meterpipe/relay/boiler/set", "ON 3600")
        row = wait_row(p, lambda r: r[0] == "on")
        check(row and row[0] == "on", "ON 3600 -> relay on", row)

        sub.publish("meterpipe/relay/boiler/set", "AUTO")
        row = wait_row(p, lambda r: r[1] != "manual" and r[2] == "-")
        check(row and row[2] == "-" and row[0] == "off",
              "AUTO -> override ended, the rules switch it off again", row)

        # nothing switches on garbage or an unknown relay
        before = p.counters("mqtt").get("commands_refused", 0)
        for payload in ("TOGGLE", "ON forever", "{\"state\":1}", "\xff", ""):
            sub.publish("meterpipe/relay/boiler/set", payload)
        sub.publish("meterpipe/relay/garage/set", "ON")
        n = p.wait_counter("mqtt", "commands_refused", lambda v: v >= before + 6, 15)
        check(n >= before + 6, "garbage and the unknown relay refused (counted)", n)
        row = relay_row(p)
        check(row and row[0] == "off" and row[2] == "-", "nothing switched", row)
        check(p.wait_log(r"mqtt: warn: ignored a command for relay boiler: state must be", 5),
              "bad payload logged")
        check(p.wait_log(r'mqtt: warn: ignored a command on meterpipe/relay/garage/set: no '
                         r'\[\[relay\]\] is named "garage"', 5), "unknown relay logged")
        lines = p.log_matching(r"ignored a command for relay boiler")
        check(len(lines) == 1, "one log line for the burst of bad payloads (rate-limited)", lines)
    finally:
        if sub:
            sub.close()
        p.stop()


def test_disabled(broker):
    p = mptest.Pipeline(body(broker.port, False), prefix="mpmq.nocmd.")
    sub = None
    try:
        p.start()
        check(p.wait_running(30) is not None, "pipeline with commands = false running")
        sub = mqtt_broker.Client(broker.port, ["meterpipe/status"])
        check(sub.wait(lambda: sub.last("meterpipe/status") == "online", 20), "worker online")
        wait_row(p, lambda r: r[0] == "off")
        for _ in range(3):
            sub.publish("meterpipe/relay/boiler/set", "ON")
        check(p.wait_log(r"mqtt: warn: ignored a command on meterpipe/relay/boiler/set: relay "
                         r"commands are off", 15), "commands = false: logged")
        n = p.wait_counter("mqtt", "commands_refused", lambda v: v >= 3, 20)
        check(n >= 3, "commands = false: refused (counted)", n)
        row = relay_row(p)
        check(row and row[0] == "off" and row[2] == "-", "commands = false: nothing switched",
              row)
        check(len(p.log_matching(r"relay commands are off")) == 1, "one log line (rate-limited)")
    finally:
        if sub:
            sub.close()
        p.stop()


def main():
    broker = mqtt_broker.Broker()
    try:
        broker.start()
        def commands():
            test_commands(broker)

        def commands_disabled():
            test_disabled(broker)
        ck.run(commands, commands_disabled)
    finally:
        broker.remove()
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
