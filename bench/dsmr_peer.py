#!/usr/bin/python3
"""The peer of bench/bench_footprint.py: a plain Python DSMR reader over TCP, the way
dsmr-reader and Home Assistant's DSMR integration read a P1 dongle.

With the `dsmr_parser` package importable it is exactly that: its SocketReader
(clients/socket_.py: a blocking socket, recv of 256 bytes, a TelegramBuffer, TelegramParser
with the V5 specification, CRC checked). Without it (Debian 12 does not package it and PyPI
may be out of reach) it runs a stand-in written for this bench that does the same work in
the same way: blocking recv(256), a buffer that cuts complete telegrams out with a regular
expression, the CRC16 of each telegram checked, every line matched against a table of OBIS
patterns and turned into values (Decimal with unit, timestamps parsed). The first line of
output says which one runs.

usage: dsmr_peer.py HOST PORT
"""
import datetime
import re
import socket
import sys
import time
from decimal import Decimal


def crc16_arc(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class TelegramBuffer:
    """Holds received text; yields each complete telegram ('/' ... '!' CRC CRLF)."""

    PATTERN = re.compile(r"\/[^\/]+?\![A-F0-9]{0,4}\0?\r\n", re.DOTALL)

    def __init__(self):
        self.text = ""

    def append(self, text):
        self.text += text

    def get_all(self):
        for m in self.PATTERN.finditer(self.text):
            yield m.group(0)
        last = self.text.rfind("!")
        nl = self.text.find("\r\n", last) if last >= 0 else -1
        if nl >= 0:
            self.text = self.text[nl + 2:]


def _number(text):
    value, _, unit = text.partition("*")
    return Decimal(value), unit or None


def _timestamp(text):
    dt = datetime.datetime.strptime(text[:12], "%y%m%d%H%M%S")
    offset = 2 if text.endswith("S") else 1
    return dt.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=offset)))


# OBIS reference -> how its values read (the subset a DSMR 5 electricity + gas meter sends)
V5_SPEC = [
    (r"\d-\d:0\.2\.8.+?\r\n", "P1_MESSAGE_HEADER", [str]),
    (r"\d-\d:1\.0\.0.+?\r\n", "P1_MESSAGE_TIMESTAMP", [_timestamp]),
    (r"\d-\d:96\.1\.1.+?\r\n", "EQUIPMENT_IDENTIFIER", [str]),
    (r"\d-\d:1\.8\.1.+?\r\n", "ELECTRICITY_USED_TARIFF_1", [_number]),
    (r"\d-\d:1\.8\.2.+?\r\n", "ELECTRICITY_USED_TARIFF_2", [_number]),
    (r"\d-\d:2\.8\.1.+?\r\n", "ELECTRICITY_DELIVERED_TARIFF_1", [_number]),
    (r"\d-\d:2\.8\.2.+?\r\n", "ELECTRICITY_DELIVERED_TARIFF_2", [_number]),
    (r"\d-\d:96\.14\.0.+?\r\n", "ELECTRICITY_ACTIVE_TARIFF", [str]),
    (r"\d-\d:1\.7\.0.+?\r\n", "CURRENT_ELECTRICITY_USAGE", [_number]),
    (r"\d-\d:2\.7\.0.+?\r\n", "CURRENT_ELECTRICITY_DELIVERY", [_number]),
    (r"\d-\d:96\.7\.21.+?\r\n", "SHORT_POWER_FAILURE_COUNT", [int]),
    (r"\d-\d:96\.7\.9.+?\r\n", "LONG_POWER_FAILURE_COUNT", [int]),
    (r"\d-\d:99\.97\.0.+?\r\n", "POWER_EVENT_FAILURE_LOG", [str]),
    (r"\d-\d:32\.32\.0.+?\r\n", "VOLTAGE_SAG_L1_COUNT", [int]),
    (r"\d-\d:52\.32\.0.+?\r\n", "VOLTAGE_SAG_L2_COUNT", [int]),
    (r"\d-\d:72\.32\.0.+?\r\n", "VOLTAGE_SAG_L3_COUNT", [int]),
    (r"\d-\d:32\.36\.0.+?\r\n", "VOLTAGE_SWELL_L1_COUNT", [int]),
    (r"\d-\d:52\.36\.0.+?\r\n", "VOLTAGE_SWELL_L2_COUNT", [int]),
    (r"\d-\d:72\.36\.0.+?\r\n", "VOLTAGE_SWELL_L3_COUNT", [int]),
    (r"\d-\d:96\.13\.0.+?\r\n", "TEXT_MESSAGE", [str]),
    (r"\d-\d:32\.7\.0.+?\r\n", "INSTANTANEOUS_VOLTAGE_L1", [_number]),
    (r"\d-\d:52\.7\.0.+?\r\n", "INSTANTANEOUS_VOLTAGE_L2", [_number]),
    (r"\d-\d:72\.7\.0.+?\r\n", "INSTANTANEOUS_VOLTAGE_L3", [_number]),
    (r"\d-\d:31\.7\.0.+?\r\n", "INSTANTANEOUS_CURRENT_L1", [_number]),
    (r"\d-\d:51\.7\.0.+?\r\n", "INSTANTANEOUS_CURRENT_L2", [_number]),
    (r"\d-\d:71\.7\.0.+?\r\n", "INSTANTANEOUS_CURRENT_L3", [_number]),
    (r"\d-\d:21\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L1_POSITIVE", [_number]),
    (r"\d-\d:41\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L2_POSITIVE", [_number]),
    (r"\d-\d:61\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L3_POSITIVE", [_number]),
    (r"\d-\d:22\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L1_NEGATIVE", [_number]),
    (r"\d-\d:42\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L2_NEGATIVE", [_number]),
    (r"\d-\d:62\.7\.0.+?\r\n", "INSTANTANEOUS_ACTIVE_POWER_L3_NEGATIVE", [_number]),
    (r"\d-\d:24\.1\.0.+?\r\n", "DEVICE_TYPE", [str]),
    (r"\d-\d:96\.1\.0.+?\r\n", "EQUIPMENT_IDENTIFIER_GAS", [str]),
    (r"\d-\d:24\.2\.1.+?\r\n", "HOURLY_GAS_METER_READING", [_timestamp, _number]),
]
_V5 = [(re.compile(p, re.DOTALL), name, kinds) for p, name, kinds in V5_SPEC]
_VALUES = re.compile(r"\((.*?)\)")


class StandInParser:
    def parse(self, telegram):
        body_end = telegram.index("!") + 1
        given = telegram[body_end:body_end + 4]
        if given and int(given, 16) != crc16_arc(telegram[:body_end].encode()):
            raise ValueError("bad CRC")
        out = {}
        for regex, name, kinds in _V5:
            m = regex.search(telegram)
            if not m:
                continue
            values = _VALUES.findall(m.group(0))[-len(kinds):]
            out[name] = [k(v) for k, v in zip(kinds, values)]
        return out


def read_stand_in(host, port):
    sock = socket.create_connection((host, port))
    buf = TelegramBuffer()
    parser = StandInParser()
    while True:
        data = sock.recv(256)
        if not data:
            return
        buf.append(data.decode("ascii"))
        for telegram in buf.get_all():
            try:
                yield parser.parse(telegram)
            except ValueError:
                pass


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        from dsmr_parser import telegram_specifications
        from dsmr_parser.clients.socket_ import SocketReader

        print("peer: dsmr_parser SocketReader", flush=True)
        telegrams = SocketReader(host, port, telegram_specifications.V5).read()
    except ImportError:
        print("peer: stand-in (dsmr_parser not installed)", flush=True)
        telegrams = read_stand_in(host, port)
    n = 0
    spent = 0.0
    t = time.process_time()
    for _ in telegrams:
        n += 1
        now = time.process_time()
        spent += now - t
        t = now
        if n % 60 == 0:
            print("peer: %d telegrams, %.0f us CPU each" % (n, spent / 60 * 1e6), flush=True)
            spent = 0.0


if __name__ == "__main__":
    main()
