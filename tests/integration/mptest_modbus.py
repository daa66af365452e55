"""mptest_modbus: register images of Modbus meters for the Modbus end-to-end scripts
(test_e2e_modbus*.py, test_e2e_serial_modbus_rtu.py), and the pymodbus TCP peer that serves
them (modbus_peer.py).

An image is {"ir": {"ADDRESS": word}, "hr": {...}} per unit, as modbus_peer.py and the RTU
peer read it from JSON.
"""
import json
import os
import signal
import socket
import struct
import subprocess

from mptest import SOURCE_DIR, kill_proc, wait_for, free_port

PEER = os.path.join(SOURCE_DIR, "tests", "integration", "modbus_peer.py")

# Eastron SDM630 map of protocols/modbus/modbus_maps.cpp (kSdm630): name, input register.
SDM630 = [
    ("voltage_l1_v", 0x0000), ("voltage_l2_v", 0x0002), ("voltage_l3_v", 0x0004),
    ("current_l1_a", 0x0006), ("current_l2_a", 0x0008), ("current_l3_a", 0x000A),
    ("power_l1_w", 0x000C), ("power_l2_w", 0x000E), ("power_l3_w", 0x0010),
    ("power_factor_l1", 0x001E), ("power_factor_l2", 0x0020), ("power_factor_l3", 0x0022),
    ("power_net_w", 0x0034), ("power_apparent_va", 0x0038), ("power_reactive_var", 0x003C),
    ("power_factor", 0x003E), ("frequency_hz", 0x0046), ("energy_import_kwh", 0x0048),
    ("energy_export_kwh", 0x004A), ("demand_avg_w", 0x0054), ("voltage_thd_l1_pct", 0x00EA),
    ("voltage_thd_l2_pct", 0x00EC), ("voltage_thd_l3_pct", 0x00EE), ("voltage_thd_pct", 0x00F8),
    ("energy_total_kwh", 0x0156), ("energy_import_l1_kwh", 0x015A),
    ("energy_import_l2_kwh", 0x015C), ("energy_import_l3_kwh", 0x015E),
    ("energy_export_l1_kwh", 0x0160), ("energy_export_l2_kwh", 0x0162),
    ("energy_export_l3_kwh", 0x0164), ("energy_total_l1_kwh", 0x0166),
    ("energy_total_l2_kwh", 0x0168), ("energy_total_l3_kwh", 0x016A),
]


def f32_words(v):
    """The two registers (high word first) of v as a big-endian float32."""
    u = struct.unpack(">I", struct.pack(">f", v))[0]
    return [u >> 16, u & 0xFFFF]


def s16(v):
    """v as an unsigned 16-bit register (two's complement)."""
    return v & 0xFFFF


def sdm_values(given, base, step):
    """A value for every SDM630 register: `given` ({name: value}), the others base + step * i
    (all exact in float32)."""
    out = dict(given)
    for i, (n, _) in enumerate(SDM630):
        out.setdefault(n, base + step * i)
    return out


def sdm_image(values):
    """The input registers 0..0x016B of an SDM630 showing `values` (0 between them)."""
    ir = {a: 0 for a in range(0, 0x016C)}
    for n, a in SDM630:
        ir[a], ir[a + 1] = f32_words(values[n])
    return {"ir": {str(a): v for a, v in ir.items()}}


def sdm_mismatches(vals_by_name, values, key_value, key_reg):
    """(name, value dict) of every SDM630 register whose value dict in vals_by_name lacks the
    number `values[name]` under key_value or the register "ir:0x...." under key_reg (a tap
    reading: "number", "native_id"; `meterpipe read`: "value", "register")."""
    bad = []
    for n, a in SDM630:
        v = vals_by_name.get(n)
        if v is None or v.get(key_value, 0.0) != values[n] or v.get(key_reg) != "ir:0x%04X" % a:
            bad.append((n, v))
    return bad


# The two Modbus TCP peers of test_e2e_modbus*.py:
#   peer A: unit 1 = an Eastron SDM630 (input registers, float32), unit 4 = an inepro PRO380
#   peer B: unit 2 = SunSpec common + inverter 103 + meter 203, unit 3 = SunSpec common + meter 203
# SDM630 values exact in float32; the grid exports 1234.5 W.
SDM_TCP_VALUES = sdm_values({
    "voltage_l1_v": 230.5, "voltage_l2_v": 231.25, "voltage_l3_v": 229.75,
    "current_l1_a": 5.5, "current_l2_a": 6.25, "current_l3_a": 7.0,
    "power_l1_w": -400.5, "power_l2_w": -410.0, "power_l3_w": -424.0,
    "power_net_w": -1234.5, "frequency_hz": 50.0, "energy_import_kwh": 12345.25,
    "energy_export_kwh": 678.5,
}, 100.0, 0.25)

PRO380_V1 = 231.5  # unit 4: only the PRO380 voltage registers (holding 0x5000..0x5007)


def pro380_image():
    hr = {}
    for k, v in enumerate([230.0, PRO380_V1, 232.0, 233.0]):
        w = f32_words(v)
        hr[0x5000 + 2 * k], hr[0x5001 + 2 * k] = w
    return {"hr": {str(a): v for a, v in hr.items()}}


def sunspec_image(inverter, meter):
    """SunSpec at 40000: marker, common (1, L 66), [inverter 103 L 50], [meter 203 L 105], end."""
    regs = []
    regs += [0x5375, 0x6E53, 1, 66]
    mn, sn = "meterpipe-test", "SN-0042"

    def ch(s, k):
        return ord(s[k]) if k < len(s) else 0
    for i in range(66):
        w = 0
        if i < 16:
            w = ch(mn, 2 * i) << 8 | ch(mn, 2 * i + 1)
        if 48 <= i < 64:
            w = ch(sn, 2 * (i - 48)) << 8 | ch(sn, 2 * (i - 48) + 1)
        regs.append(w)
    if inverter:
        inv = [0] * 50
        for i in (1, 2, 3, 5, 6, 7, 9, 10, 16, 17, 18, 19, 20, 21, 25, 26, 29, 30, 32, 33, 34):
            inv[i] = 0xFFFF
        inv[0], inv[4] = 1234, s16(-2)        # 12.34 A
        inv[8], inv[11] = 2301, s16(-1)       # 230.1 V
        inv[12], inv[13] = 321, 1             # 3210 W
        inv[14], inv[15] = 5002, s16(-2)      # 50.02 Hz
        inv[22], inv[23], inv[24] = 0x0001, 0x86A0, 0  # 100000 Wh -> 100 kWh
        for i in (16, 18, 29, 32, 33, 34, 20):
            inv[i] = 0x8000
        inv[31], inv[35] = 400, s16(-1)       # 40.0 C
        inv[36] = 4
        regs += [103, 50] + inv
    if meter:
        met = [0x8000] * 105
        met[6], met[13] = 2302, s16(-1)       # PhVphA 230.2 V
        met[14], met[15] = 4998, s16(-2)      # 49.98 Hz
        met[16], met[20] = s16(-2500), 0      # W = -2500 (exporting)
        met[36], met[37] = 0, 5000            # TotWhExp 5000 Wh
        met[44], met[45] = 0, 7000            # TotWhImp 7000 Wh
        met[52] = 0
        for i in (38, 39, 40, 41, 42, 43, 46, 47, 48, 49, 50, 51):
            met[i] = 0                        # acc32 0 = not implemented
        regs += [203, 105] + met
    regs += [0xFFFF, 0]
    return {"hr": {str(40000 + i): w for i, w in enumerate(regs)}}


def tcp_peers(d):
    """(peer A, peer B) as above, not started; their files in dir d."""
    return (Peer(d, "peerA", {"1": sdm_image(SDM_TCP_VALUES), "4": pro380_image()}),
            Peer(d, "peerB", {"2": sunspec_image(True, True), "3": sunspec_image(False, True)}))


def approx(a, b, tol=1e-6):
    """True when a is b to a relative tol (a None: False)."""
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


def can_connect(port):
    """True when something accepts a TCP connection on 127.0.0.1:port."""
    s = socket.socket()
    s.settimeout(0.2)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Peer:
    """modbus_peer.py (pymodbus, Modbus TCP) on a free 127.0.0.1 port serving `units`
    ({"unit id": image}); its image and log in dir d. Restartable on the same port."""

    def __init__(self, d, name, units):
        self.port = free_port()
        self.path = os.path.join(d, name + ".json")
        with open(self.path, "w") as f:
            json.dump({"units": units}, f)
        self.proc = None
        self.log = os.path.join(d, name + ".log")

    def start(self):
        """Starts the peer; True once it accepts connections (within 20 s)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["/usr/bin/python3", PEER, "--port", str(self.port),
                                          "--image", self.path], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        ok = wait_for(lambda: self.proc.poll() is not None or can_connect(self.port), 20)
        return ok and self.proc.poll() is None

    def stop(self):
        kill_proc(self.proc, signal.SIGKILL)
