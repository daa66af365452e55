#!/usr/bin/python3
"""Modbus TCP peer for meterpipe's tests (Debian python3-pymodbus 3.0).

Serves register images given as JSON, bound to 127.0.0.1 only:

  {"units": {"1": {"ir": {"0": 17254, "1": 0, ...}, "hr": {...}}, "3": {...}}}

Addresses are 0-based (zero_mode). Only the listed registers exist: a read that touches any
other register gets exception 02 (illegal data address), like a meter with holes. Unit ids
that are not listed get no answer at all (like a silent id on an RTU bus).

  modbus_peer.py --port P --image FILE [--delay-ms N]

--delay-ms delays every answer (a slow device). The process runs until it is killed.
"""

import argparse
import json
import logging
import sys
import time
import types


def stub_serial_modules():
    # pymodbus.server imports pyserial / serial_asyncio even for TCP; Debian only recommends
    # them. Stand-ins are enough for a TCP server.
    for name in ("serial", "serial_asyncio"):
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            if name == "serial_asyncio":
                mod.create_serial_connection = None
            sys.modules[name] = mod


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.CRITICAL)
    stub_serial_modules()
    from pymodbus.datastore import (ModbusServerContext, ModbusSlaveContext,
                                    ModbusSparseDataBlock)
    from pymodbus.server import StartTcpServer

    with open(args.image, encoding="utf-8") as f:
        image = json.load(f)

    delay = args.delay_ms / 1000.0

    class SlowContext(ModbusSlaveContext):
        def getValues(self, fc_as_hex, address, count=1):
            if delay > 0:
                time.sleep(delay)
            return super().getValues(fc_as_hex, address, count)

    def block(regs):
        # An empty sparse block refuses every address.
        values = {int(a): int(v) & 0xFFFF for a, v in regs.items()}
        return ModbusSparseDataBlock(values) if values else ModbusSparseDataBlock({})

    slaves = {}
    for unit, spec in image.get("units", {}).items():
        slaves[int(unit)] = SlowContext(
            di=ModbusSparseDataBlock({}),
            co=ModbusSparseDataBlock({}),
            hr=block(spec.get("hr", {})),
            ir=block(spec.get("ir", {})),
            zero_mode=True,
        )
    context = ModbusServerContext(slaves=slaves, single=False)
    StartTcpServer(context=context, address=("127.0.0.1", args.port))


if __name__ == "__main__":
    main()
