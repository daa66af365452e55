"""mptest: shared helpers for meterpipe script tests (Python 3 standard library only).

What it gives a test script:

    import mptest
    ck = mptest.Checker()                       # one line per check, summary, exit code
    p = mptest.Pipeline('[[meter]]\\nname = "home"\\nsource = "simulate"\\n')
    try:
        p.start()                               # `meterpipe run` with a temp config
        ck.check(p.wait_running(8) is not None, "all workers running")
        msgs = p.tap(["reading/"], count=3, timeout=10)   # blocking `meterpipe tap`
        tap = p.start_tap(["reading/"])         # or a tap collecting in the background
        ...
        ck.check(p.counters("process").get("readings_home", 0) >= 3, "readings counted")
    finally:
        p.stop()                                # SIGTERM, then SIGKILL by pid; removes the dir
    sys.exit(ck.finish())

Environment (set by ctest): MP_BIN_DIR (meterpipe, meterpipe-<worker>), MP_SOURCE_DIR (the
source tree, for tests/data), MP_BUILD_DIR, PTYSHIM. Without them the paths default to the
checkout this file sits in (build/bin, tests/data).

Every Pipeline lives in its own short temp dir under /tmp (ipc paths stay far below the
108-byte limit of a unix socket path) and starts nothing bound to anything but ipc sockets.
Pipeline.stop() always ends what it started: the supervisor by its pid, then any worker pid
it saw in `status`, then any process whose command line still names its config file.

Other helpers: TcpPeer (a 127.0.0.1 listener playing a P1 dongle / ser2net), run_cli and
decode_dsmr / decode_one (`meterpipe decode dsmr`), check_readings (tap readings == decoded
telegrams, value by value), cpu_seconds / alive / procs_using (/proc), crc16 (DSMR CRC),
read_data (tests/data files), status_json / worker_of / acquire_health / state_is / worker_pid
(`meterpipe status --json` of a pipeline nobody wrapped in a Supervisor), ReadingTap (the
Reading / RawFrame dicts of one topic), plug_tty and serial_harness_problem (serial tests),
script_main (a script's main: the checks, the summary, the exit code). Checker() also turns
SIGTERM/SIGHUP into a clean exit, and an atexit hook stops every Pipeline and Tap still running.

What only some scripts share lives next to this file: mptest_actuate (P1 dongle, relay command
scripts), mptest_modbus (register images, the pymodbus TCP peer), mptest_mbus (the M-Bus slave
on a pty), mptest_serve (the serve pipeline, HTTP and WebSocket clients).

Tap messages are the JSON objects `meterpipe tap` prints ({"topic", "publisher", "seq",
"envelope": {... "reading"/"health"/"raw": {...}}}); protobuf's JSON turns int64 fields into
strings ("receive_time_ns": "17...") and omits empty ones (unit "", time_ns 0).
"""
import atexit
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MP_SOURCE_DIR") or os.path.normpath(os.path.join(_HERE, "..", ".."))
BIN_DIR = os.environ.get("MP_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
MP = os.path.join(BIN_DIR, "meterpipe")
DATA_DIR = os.path.join(SOURCE_DIR, "tests", "data")
DSMR_DIR = os.path.join(DATA_DIR, "dsmr")

# The environment the meterpipe commands get: the test's own, minus what would change how
# they log or make a worker believe it is supervised.
ENV = dict(os.environ)
for _k in ("MP_SUPERVISED", "JOURNAL_STREAM", "MP_LOG_LEVEL"):
    ENV.pop(_k, None)

CLK_TCK = os.sysconf("SC_CLK_TCK")

_live = []  # Pipelines and Taps not stopped yet: ended at exit, whatever happens


def _cleanup_all():
    for obj in list(reversed(_live)):
        try:
            obj.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through every `finally`, then atexit runs


# ---------------------------------------------------------------------------------------------
# Checks and waiting

class Checker:
    """Counts checks, prints `ok   what` / `FAIL what: detail`, and the final summary line."""

    def __init__(self, handle_signals=True, max_detail=1500):
        """Also makes SIGTERM/SIGHUP (a ctest timeout, a closed terminal) exit through the
        `finally` blocks and the atexit cleanup, so nothing started is left running
        (handle_signals=False leaves the default signal handling alone). A failure detail
        longer than max_detail characters is cut (None: printed whole)."""
        self.passed = 0
        self.failed = 0
        self.max_detail = max_detail
        self.t0 = time.monotonic()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _exit_on_signal)

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print("ok   " + what, flush=True)
        else:
            self.failed += 1
            d = str(detail)
            if self.max_detail is not None and len(d) > self.max_detail:
                d = d[:self.max_detail] + "..."
            print("FAIL " + what + ((": " + d) if d != "" else ""), flush=True)
        return bool(cond)

    def run(self, *tests, where=True, print_tb=False):
        """Runs each test function; an exception in one is a failed check, not a traceback.
        The failure detail is repr(exception) and (where=True) the last traceback lines;
        print_tb=True also prints the whole traceback to stderr."""
        for t in tests:
            print("--- " + t.__name__, flush=True)
            try:
                t()
            except Exception as e:  # noqa: BLE001 - a crash of the test itself is a failure
                import traceback
                if print_tb:
                    traceback.print_exc()
                detail = repr(e)
                if where:
                    tb = traceback.format_exc().strip().splitlines()
                    detail += " at " + " | ".join(tb[-3:])
                self.check(False, t.__name__ + " raised", detail)

    def finish(self, time_inline=False):
        """Prints `N passed, M failed` alone on a line (time_inline=True: followed by the time
        on the same line, `N passed, M failed (T s)`); returns the exit code (1 on failure)."""
        if time_inline:
            print("%d passed, %d failed (%.1f s)" % (self.passed, self.failed,
                                                     time.monotonic() - self.t0))
        else:
            print("(%.1f s)" % (time.monotonic() - self.t0), flush=True)
            print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0


def script_main(ck, *tests, serial=False, time_inline=False, **run_args):
    """The main of a test script: refuses to run without meterpipe (serial=True: also outside
    tests/harness/serial_ns.sh) as one failed check, else ck.run(*tests, **run_args); prints
    the summary (Checker.finish) and returns the exit code."""
    why = serial_harness_problem() if serial else ""
    if why:
        print("FAIL SERIAL TEST NOT RUN (needs tests/harness/serial_ns.sh): " + why)
    elif not os.access(MP, os.X_OK):
        why = "meterpipe not found"
        print("FAIL meterpipe not found at %s (set MP_BIN_DIR)" % MP)
    if why:
        print("0 passed, 1 failed")
        return 1
    ck.run(*tests, **run_args)
    return ck.finish(time_inline)


def wait_for(pred, timeout, interval=0.05):
    """Polls pred() until it returns something truthy or timeout seconds pass; returns it."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def note(text):
    """An indented line of information between the checks (not counted)."""
    print("     " + text, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes

def proc_stat(pid):
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def alive(pid):
    """True when pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in "ZX"


def cpu_seconds(pid):
    """utime + stime of pid in seconds (None when it is gone)."""
    st = proc_stat(pid)
    if st is None:
        return None
    # stat fields 14 and 15 (utime, stime); st[0] is field 3 (state)
    return (int(st[11]) + int(st[12])) / CLK_TCK


def procs_using(needle):
    """Live pids (not ours) whose command line contains needle, e.g. a config path."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and alive(int(d)):
            out.append(int(d))
    return out


def run_cli(args, input=None, timeout=20, text=False):
    """Runs `meterpipe ARGS...`; returns the CompletedProcess (bytes stdout/stderr; str with
    text=True)."""
    return subprocess.run([MP] + list(args), env=ENV, input=input, capture_output=True,
                          timeout=timeout, text=text,
                          stdin=None if input is not None else subprocess.DEVNULL)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kill_proc(proc, sig=signal.SIGTERM, wait=5):
    """Sends `sig` to a Popen and waits up to `wait` s, then SIGKILL; no-op when it ended."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class InfluxServer:
    """A real influxd 1.6 (Debian `influxdb`) with everything in a temp dir, on free
    127.0.0.1 ports (HTTP and the RPC port it always opens); restartable. `http_extra`: more
    lines for its [http] table (auth-enabled, https-*), `scheme` "https" with it.
    start() waits for /ping to answer 204 through self.ping(), which a subclass with its own
    client (TLS, auth) replaces."""

    def __init__(self, prefix="mpinflux.", http_extra="", scheme="http"):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.port = free_port()
        rpc = free_port()
        while rpc == self.port:
            rpc = free_port()
        self.scheme = scheme
        self.log_path = os.path.join(self.dir, "influxd.log")
        self.conf = os.path.join(self.dir, "influxdb.conf")
        d = self.dir
        with open(self.conf, "w") as f:
            f.write('reporting-enabled = false\nbind-address = "127.0.0.1:%d"\n'
                    '[meta]\n  dir = "%s/meta"\n'
                    '[data]\n  dir = "%s/data"\n  wal-dir = "%s/wal"\n'
                    '  query-log-enabled = false\n'
                    '[monitor]\n  store-enabled = false\n'
                    '[http]\n  bind-address = "127.0.0.1:%d"\n  log-enabled = false\n'
                    '  pprof-enabled = false\n%s'
                    '[ifql]\n  enabled = false\n' % (rpc, d, d, d, self.port, http_extra))
        self.proc = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def ping(self):
        """HTTP status of GET /ping (0: no answer)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return 0

    def start(self):
        """Starts influxd; True once /ping answers 204 (within 20 s)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["influxd", "-config", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        ok = wait_for(lambda: self.proc.poll() is not None or self.ping() == 204, 20, 0.03)
        return bool(ok) and self.proc.poll() is None

    def stop(self):
        kill_proc(self.proc, wait=10)

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Serial tests (run inside tests/harness/serial_ns.sh)

def serial_harness_problem():
    """'' inside serial_ns.sh (MP_SERIAL_HARNESS=1, a tmpfs on /dev, ptyshim.so preloaded),
    else why not."""
    if os.environ.get("MP_SERIAL_HARNESS") != "1":
        return "MP_SERIAL_HARNESS is not set"
    try:
        with open("/proc/self/mounts") as f:
            devfs = [l.split()[2] for l in f if l.split()[1] == "/dev"]
    except OSError:
        return "/proc/self/mounts unreadable"
    if not devfs or devfs[-1] != "tmpfs":
        return "/dev is not the harness tmpfs"
    if "ptyshim" not in os.environ.get("LD_PRELOAD", ""):
        return "ptyshim.so is not in LD_PRELOAD"
    return ""


def in_serial_harness():
    """True inside serial_ns.sh (see serial_harness_problem)."""
    return serial_harness_problem() == ""


def plug_tty(target, tty="/dev/ttyS0"):
    """Makes `tty` a symlink to `target`, replaced atomically (as pty_harness.h does)."""
    tmp = tty + ".plug.%d" % os.getpid()
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.rename(tmp, tty)



def listen_tcp():
    """(listening socket, port) on 127.0.0.1 at a free port (SO_REUSEADDR, backlog 4)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock, sock.getsockname()[1]


class TcpPeer:
    """A listening TCP socket on 127.0.0.1 (free port) that plays a device (a P1 dongle,
    ser2net): accept() one connection at a time, send on it, close it to drop the client."""

    def __init__(self):
        self.sock, self.port = listen_tcp()
        self.conns = []

    def accept(self, timeout):
        """The next client connection (blocking, non-Nagle), or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            c, _ = self.sock.accept()
        except (socket.timeout, OSError):
            return None
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(10)
        self.conns.append(c)
        return c

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


def no_crash_text(s, sanitizer=True):
    """False when s looks like a crash report (abort, uncaught exception and, with
    sanitizer=True, a sanitizer report)."""
    needles = ("Traceback", "terminate called", "Aborted", "core dumped", "Segmentation",
               "what():")
    if sanitizer:
        needles += ("AddressSanitizer", "runtime error:")
    return not any(t in s for t in needles)


# ---------------------------------------------------------------------------------------------
# Tap

class Tap:
    """`meterpipe tap PREFIX... --run-dir DIR` in the background; messages with arrival times.

    It may be started before the supervisor: ZeroMQ keeps retrying the connections, so a tap
    started first sees a publisher's messages from (nearly) its first one.
    """

    def __init__(self, run_dir, prefixes=("",), extra_args=(), config=None, clock=time.monotonic,
                 keep_stderr=True, stop_wait=3):
        """config: `tap -c CONFIG PREFIX...` instead of `tap PREFIX... --run-dir RUN_DIR`.
        clock: the arrival time source (time.time for wall times). keep_stderr=False sends
        the tap's stderr to /dev/null. stop_wait: seconds between SIGTERM and SIGKILL."""
        self.lock = threading.Lock()
        self.items = []   # (arrival time by clock, message dict)
        self.bad = []     # stdout lines that were not JSON
        self.clock = clock
        self.stop_wait = stop_wait
        if config is not None:
            cmd = [MP, "tap", "-c", config] + list(prefixes) + list(extra_args)
        else:
            cmd = [MP, "tap"] + list(prefixes) + ["--run-dir", run_dir] + list(extra_args)
        self.proc = subprocess.Popen(cmd, env=ENV, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL)
        _live.append(self)
        self.err = b""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            t = self.clock()
            try:
                obj = json.loads(line)
            except ValueError:
                with self.lock:
                    self.bad.append(line)
                continue
            with self.lock:
                self.items.append((t, obj))

    def messages(self, topic_prefix=""):
        """Messages so far whose topic starts with topic_prefix."""
        with self.lock:
            return [m for _, m in self.items if m.get("topic", "").startswith(topic_prefix)]

    def timed(self, topic_prefix=""):
        with self.lock:
            return [(t, m) for t, m in self.items if m.get("topic", "").startswith(topic_prefix)]

    def wait_count(self, n, topic_prefix="", timeout=10):
        """Waits until at least n messages of topic_prefix came; returns them (maybe fewer)."""
        wait_for(lambda: len(self.messages(topic_prefix)) >= n, timeout)
        return self.messages(topic_prefix)

    def stop(self):
        if self in _live:
            _live.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(2)
        try:
            if self.proc.stderr is not None:
                self.err = self.proc.stderr.read() or b""
        except (OSError, ValueError):
            pass


def wait_tap_connected(tap, timeout=20):
    """True once the tap got a heartbeat of process (so it receives process' readings)."""
    return bool(wait_for(lambda: tap.messages("health/process"), timeout))


def payload_of(msg):
    """The Reading (or RawFrame) dict of a tap message with its bus seq as "_seq"; or None."""
    env = msg.get("envelope", {})
    r = env.get("reading", env.get("raw"))
    if r is not None:
        r["_seq"] = int(msg.get("seq", 0))
    return r


class ReadingTap(Tap):
    """A Tap (stderr dropped) that hands out the Reading / RawFrame dicts of one topic."""

    def __init__(self, run_dir, prefixes=("reading/",), extra_args=()):
        Tap.__init__(self, run_dir, prefixes, extra_args=extra_args, keep_stderr=False)

    def timed_payloads(self, topic, since=0.0):
        """(arrival time, payload) of the messages on exactly `topic` since `since`."""
        with self.lock:
            items = [(t, m) for t, m in self.items if m.get("topic") == topic and t >= since]
        out = []
        for t, m in items:
            r = payload_of(m)
            if r is not None:
                out.append((t, r))
        return out

    def readings(self, topic, since=0.0):
        return [r for _, r in self.timed_payloads(topic, since)]

    def last(self, topic, since=0.0):
        rs = self.readings(topic, since)
        return rs[-1] if rs else None


def status_json(run_dir=None, cfg=None, args=None):
    """`meterpipe status --json` of the pipeline at run_dir (or of config cfg, or found with
    the status arguments args) as a dict; None when nothing answers."""
    if args is None:
        args = ["--run-dir", run_dir] if run_dir is not None else ["-c", cfg]
    try:
        r = run_cli(["status", "--json"] + list(args), timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def worker_of(st, name):
    """The entry of worker `name` in a status dict (None when absent)."""
    for w in (st or {}).get("workers", []):
        if w["name"] == name:
            return w
    return None


def acquire_health(run_dir):
    """acquire's status entry (state, pid, counters, info) of the pipeline at run_dir."""
    return worker_of(status_json(run_dir), "acquire")


def fresh_acquire_health(run_dir, timeout=25):
    """acquire's status entry from a heartbeat sent after this call (heartbeats carry the
    counters), None on timeout."""
    t0 = time.monotonic()

    def fresh():
        w = acquire_health(run_dir)
        age = w.get("last_health_age_s") if w else None
        return w if age is not None and age < time.monotonic() - t0 else None
    return wait_for(fresh, timeout, 0.2)


def state_is(run_dir, meter, want):
    """acquire's status entry when its info says state_<meter> = want, else None."""
    w = acquire_health(run_dir)
    return w if w and w.get("info", {}).get("state_" + meter) == want else None


def worker_pid(cfg, name):
    """The pid of worker `name` when it runs (status of config cfg), else None."""
    w = worker_of(status_json(cfg=cfg), name)
    return w["pid"] if w and w["state"] == "running" else None


# ---------------------------------------------------------------------------------------------
# Supervisor: `meterpipe run` of a config file; Pipeline: the same with a temp config

class Supervisor:
    """`meterpipe run -c CFG [ARGS]` of a config file the test wrote itself, its stderr
    collected line by line (with arrival times), `meterpipe status` of it.

    start=True (the default) starts it at construction. status_args: how `status` finds it
    (default ["-c", cfg]). stop() only ends the supervisor (SIGTERM, SIGKILL after 8 s): what
    else is left is the test's business (Pipeline.stop() does more).
    """

    def __init__(self, cfg, args=(), start=True, status_args=None):
        self.cfg = cfg
        self.status_args = list(status_args) if status_args else ["-c", cfg]
        self.proc = None
        self.reader = None
        self.lines = []   # (monotonic time, stderr line of the supervisor and its workers)
        self.lock = threading.Lock()
        self.seen_pids = set()
        if start:
            self.start(args)

    def start(self, args=(), env=None, stdout=subprocess.DEVNULL):
        """Starts `meterpipe run` (env: instead of ENV; stdout: where its stdout goes)."""
        self.proc = subprocess.Popen([MP, "run", "-c", self.cfg] + list(args),
                                     env=ENV if env is None else env, stdin=subprocess.DEVNULL,
                                     stdout=stdout, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()
        return self

    def _read(self, proc):
        for raw in proc.stderr:
            with self.lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    # --- logs
    def log(self):
        """Every stderr line so far ("worker: level: text")."""
        with self.lock:
            return [l for _, l in self.lines]

    def timed_log(self):
        with self.lock:
            return list(self.lines)

    def clear_log(self):
        with self.lock:
            self.lines = []

    def log_matching(self, regex, since=0.0):
        """Lines matching regex (re.search) that arrived at or after monotonic time since."""
        r = re.compile(regex)
        with self.lock:
            return [l for t, l in self.lines if t >= since and r.search(l)]

    def wait_log(self, regex, timeout, since=0.0):
        """Waits for a line matching regex; returns (arrival time, line) or None."""
        r = re.compile(regex)

        def find():
            with self.lock:
                for t, l in self.lines:
                    if t >= since and r.search(l):
                        return (t, l)
            return None
        return wait_for(find, timeout, 0.02)

    # --- status
    def status(self):
        """`meterpipe status --json` as a dict, or None when nothing answers."""
        st = status_json(args=self.status_args)
        if st is None:
            return None
        for w in st.get("workers", []):
            if (w.get("pid") or 0) > 0:
                self.seen_pids.add(w["pid"])
        return st

    def worker(self, name, st=None):
        return worker_of(st or self.status(), name)

    def counters(self, name, st=None):
        """Health counters of worker name ({} when unknown)."""
        w = self.worker(name, st)
        return dict(w.get("counters", {})) if w else {}

    def pids(self, st=None):
        st = st or self.status() or {"workers": []}
        return {w["name"]: w["pid"] for w in st["workers"]}

    def all_running(self):
        """Status when every worker runs and has sent a heartbeat, else None (one look)."""
        st = self.status()
        if not st or not st["workers"]:
            return None
        for w in st["workers"]:
            if w["state"] != "running" or not w["pid"] or w["last_health_age_s"] is None:
                return None
        return st

    def wait_running(self, timeout=10):
        """Status once every worker runs and has sent a heartbeat; None on timeout."""
        return wait_for(self.all_running, timeout, 0.1)

    def wait_counter(self, worker, counter, pred, timeout=20):
        """Waits until pred(value of counter, 0 when absent) holds; returns the last value."""
        last = [0]

        def ok():
            last[0] = self.counters(worker).get(counter, 0)
            return pred(last[0])
        wait_for(ok, timeout, 0.2)
        return last[0]

    def fresh_status(self, workers, timeout=25):
        """Status once each of `workers` has sent a heartbeat after this call (heartbeats
        carry the counters): what happened before the call is in it. None on timeout."""
        t0 = time.monotonic()

        def fresh():
            st = self.status()
            if not st:
                return None
            for name in workers:
                w = self.worker(name, st)
                age = w.get("last_health_age_s") if w else None
                if age is None or age >= time.monotonic() - t0:
                    return None
            return st
        return wait_for(fresh, timeout, 0.2)

    # --- end
    def stop_process(self):
        """SIGTERM the supervisor (SIGKILL after 8 s), waits for its stderr; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader:
            self.reader.join(2)
        return self.proc.returncode

    def stop(self):
        return self.stop_process()


class Pipeline(Supervisor):
    """One `meterpipe run` with its own temp dir, config, run_dir and state_dir.

    body: TOML after the [general] table ([[meter]] tables, [upload] ...).
    general: extra `key = value` lines for [general] (e.g. 'watchdog_s = 10').
    "@DIR@" in body or general is replaced by the pipeline's temp dir (for files the config
    names: file = "@DIR@/telegrams.txt"; write them with open(p.path("telegrams.txt"))).
    The config is written at construction (self.cfg, self.run_dir), so a Tap can be
    started before start().
    """

    def __init__(self, body, general="", prefix="mpt."):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.run_dir = os.path.join(self.dir, "run")
        cfg = os.path.join(self.dir, "meterpipe.toml")
        with open(cfg, "w") as f:
            f.write('[general]\nrun_dir = "%s"\nstate_dir = "%s"\n%s\n\n%s'
                    % (self.run_dir, os.path.join(self.dir, "state"),
                       general.replace("@DIR@", self.dir), body.replace("@DIR@", self.dir)))
        Supervisor.__init__(self, cfg, start=False, status_args=["--run-dir", self.run_dir])
        self.taps = []

    def path(self, name):
        """A path inside this pipeline's temp dir."""
        return os.path.join(self.dir, name)

    def start(self, args=()):
        Supervisor.start(self, args)
        _live.append(self)
        return self

    # --- taps
    def start_tap(self, prefixes=("",), extra_args=()):
        """A background Tap on this pipeline's run_dir (stopped by stop())."""
        t = Tap(self.run_dir, prefixes, extra_args=extra_args)
        self.taps.append(t)
        return t

    def tap(self, prefixes=("",), count=1, timeout=10):
        """`meterpipe tap PREFIX... --count N`: the messages (a list of dicts) and the exit code."""
        try:
            r = subprocess.run([MP, "tap"] + list(prefixes) + ["--run-dir", self.run_dir,
                                                               "--count", str(count)],
                               env=ENV, capture_output=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out, rc = e.stdout or b"", "timeout"
        else:
            out, rc = r.stdout, r.returncode
        msgs = []
        for line in out.splitlines():
            try:
                msgs.append(json.loads(line))
            except ValueError:
                pass
        return msgs, rc

    # --- end
    def stop(self, remove=True):
        """SIGTERM the supervisor (SIGKILL after 8 s), end leftovers by pid; returns its exit code."""
        if self in _live:
            _live.remove(self)
        for t in self.taps:
            t.stop()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.status()  # remember the current worker pids
            except Exception:  # noqa: BLE001
                pass
        rc = self.stop_process()
        for pid in self.seen_pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in procs_using(self.cfg):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def journal_frames(state_dir, worker="acquire"):
    """Records in a worker's journal (<state_dir>/journal/<worker>/*.jnl; docs/DURABILITY.md:
    an 8-byte segment header, then records of [u32 length][u32 CRC][payload])."""
    import glob
    n = 0
    for name in sorted(glob.glob(os.path.join(state_dir, "journal", worker, "*.jnl"))):
        with open(name, "rb") as f:
            data = f.read()
        off = 8
        while off + 8 <= len(data):
            ln = int.from_bytes(data[off:off + 4], "little")
            if off + 8 + ln > len(data):
                break
            n += 1
            off += 8 + ln
    return n


# ---------------------------------------------------------------------------------------------
# Readings

def reading_of(msg):
    """The Reading dict of a tap message (or {})."""
    return msg.get("envelope", {}).get("reading", {})


def values_of(reading):
    """{canonical name: value dict} of a Reading dict (first value of each name)."""
    out = {}
    for v in reading.get("values", []):
        out.setdefault(v["name"], v)
    return out


def number(reading, name):
    """The number of value `name` of a Reading dict (0.0 when it has none), None when absent."""
    v = values_of(reading).get(name)
    return None if v is None else v.get("number", 0.0)


def values_by_name(reading):
    """{canonical name: number or text} of a Reading dict (first value of each name)."""
    out = {}
    for v in reading.get("values", []):
        if v.get("name") not in out:
            out[v.get("name")] = v["number"] if "number" in v else v.get("text")
    return out


def iso_to_ns(text):
    """ISO 8601 UTC ("2020-05-12T11:54:09Z", optional .mmm) -> unix ns."""
    t = text.rstrip("Z")
    frac_ns = 0
    if "." in t:
        t, frac = t.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    d = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) * 1000000000 + frac_ns


def norm_reading_values(reading):
    """Values of a tap Reading as [(name, native id, number or text, unit, time_ns or 0)]."""
    out = []
    for v in reading.get("values", []):
        val = v["number"] if "number" in v else v.get("text", "")
        out.append((v.get("name", ""), v.get("native_id", ""), val, v.get("unit", ""),
                    int(v.get("time_ns", 0))))
    return out


def norm_decode_values(obj):
    """Values of one `meterpipe decode dsmr` JSON object in the same form as above."""
    out = []
    for v in obj.get("values", []):
        t = iso_to_ns(v["time"]) if v.get("time") else 0
        out.append((v["name"], v["obis"], v["value"], v.get("unit", ""), t))
    return out


def same_values(a, b):
    """True when two normalized value lists are equal (numbers to 1e-12 relative: the decode
    command prints %.15g, protobuf's JSON the shortest round-trip form)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x[0] != y[0] or x[1] != y[1] or x[3] != y[3] or x[4] != y[4]:
            return False
        vx, vy = x[2], y[2]
        if isinstance(vx, (int, float)) and isinstance(vy, (int, float)):
            if abs(vx - vy) > 1e-12 * max(1.0, abs(vx), abs(vy)):
                return False
        elif vx != vy:
            return False
    return True


def diff_values(a, b):
    """First differences between two normalized value lists (for failure messages)."""
    out = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x is None or y is None or not same_values([x], [y]):
            out.append((i, x, y))
        if len(out) >= 4:
            break
    return out


def decode_dsmr(data, key_file=None):
    """`meterpipe decode dsmr -` of bytes: (exit code, [JSON objects], stderr text)."""
    args = ["decode", "dsmr", "-"]
    if key_file:
        args += ["--key-file", key_file]
    r = run_cli(args, input=data)
    objs = []
    for line in r.stdout.splitlines():
        objs.append(json.loads(line))
    return r.returncode, objs, r.stderr.decode(errors="replace")


def read_data(name, sub="dsmr"):
    """Bytes of tests/data/<sub>/<name>."""
    with open(os.path.join(DATA_DIR, sub, name), "rb") as f:
        return f.read()


def decode_one(tele, key_file=None):
    """(normalized values, JSON object) of the single telegram `tele` as `meterpipe decode
    dsmr` decodes it; raises when that fails (use it for telegrams known to be good)."""
    rc, objs, err = decode_dsmr(tele, key_file)
    if rc != 0 or len(objs) != 1:
        raise RuntimeError("decode dsmr of a known-good telegram failed: %r %r" % (rc, err))
    return norm_decode_values(objs[0]), objs[0]


def crc16(data):
    """CRC-16/ARC as DSMR uses it (poly 0x8005 reflected, init 0) over bytes."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# The key file of the encrypted test telegrams (tests/data/dsmr/SOURCES.md).
DSMR_TEST_KEY = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n"


def dsmr_tcp_pipeline(meter, port, extra=""):
    """A Pipeline with one DSMR meter on source = "tcp" at 127.0.0.1:port (extra: more keys)."""
    return Pipeline('[[meter]]\nname = "%s"\nsource = "tcp"\nhost = "127.0.0.1"\nport = %d\n%s'
                    % (meter, port, extra), prefix="mpd.")


def check_readings(ck, what, msgs, teles, meter):
    """Checks (with Checker ck) that the reading/<meter> tap messages in msgs are exactly the
    telegrams teles = [(name, bytes)], in order: one check per telegram (some reading has the
    values `decode dsmr` gives for it, with meter, protocol and meter time), then one that
    there are as many readings as telegrams, in telegram order. Returns the readings."""
    got = [m for m in msgs if m["topic"] == "reading/" + meter]
    vals = [norm_reading_values(reading_of(m)) for m in got]
    found = []
    for name, t in teles:
        want, obj = decode_one(t)
        idx = [i for i, v in enumerate(vals) if same_values(v, want)]
        if not ck.check(idx, "%s: %s becomes a reading with the values `decode dsmr` gives (%d)"
                        % (what, name, len(want)),
                        "readings (equipment_id): " + str([values_by_name(reading_of(m))
                                                           .get("equipment_id") for m in got])):
            continue
        r = reading_of(got[idx[0]])
        want_mt = iso_to_ns(obj["meter_time"]) if obj["meter_time"] else 0
        ck.check(int(r.get("meter_time_ns", 0)) == want_mt and r.get("meter") == meter and
                 r.get("protocol") == "dsmr",
                 "%s: %s: meter %s, protocol dsmr, meter time %s"
                 % (what, name, meter, obj["meter_time"]),
                 (r.get("meter"), r.get("protocol"), r.get("meter_time_ns")))
        found.append(idx[0])
    ck.check(found == list(range(len(got))) and len(got) == len(teles),
             "%s: %d readings on reading/%s, in telegram order, nothing else"
             % (what, len(teles), meter), (len(got), found))
    return got
