#!/usr/bin/env python3
"""mew benchmark suite: mew against the bare PTY, tmux and the peers, in one run.

Usage: python3 bench/run.py [--quick] [--only WORKLOAD,...] [--tools TOOL,...]
                            [--reps N] [--no-build] [--no-docs]

Every measurement is repeated (5 times by default, 3 with --quick) and reported as
median and min-max; the baselines are measured in the same run. Results go to
bench/results/latest.json, the tables into docs/performance.md (between markers)
and the chart into docs/performance.svg. See docs/performance.md.

This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WL = BENCH / "wl"
TOOLS = BENCH / ".tools"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
# MEW_BENCH_BIN compares another build (implies --no-build).
MEW = Path(os.environ.get("MEW_BENCH_BIN") or ROOT / "target" / "release" / "mew")
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TAG = "MEW_BENCH_TAG"
RUN_ID = uuid.uuid4().hex[:12]
TMUX_SOCK = f"mewbench-{RUN_ID}"
COLS, ROWS = 200, 50

ENV = dict(os.environ)
ENV[TAG] = RUN_ID
ENV["PATH"] = os.pathsep.join(
    [str(TOOLS / "bin"), str(TOOLS / "node_modules" / ".bin"), str(TOOLS / "venv" / "bin"), ENV.get("PATH", "")]
)
ENV["PM2_HOME"] = str(TOOLS / "pm2home")
ENV.pop("TMUX", None)
ENV.pop("NO_COLOR", None)
ENV["TERM"] = "xterm-256color"


class Unavailable(Exception):
    """A tool cannot be measured on a workload (the reason is reported)."""


class Timeout(Exception):
    pass


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc helpers


def proc_cpu(pid: int) -> float:
    """user+sys seconds of one process (all its threads, not its children)."""
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = s[s.rfind(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK


def proc_rss(pid: int) -> int:
    """Resident set in bytes (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mapped_once(pids: list[int]) -> int:
    """Bytes of physical memory mapped by these processes, each page counted
    once (read from /proc/PID/pagemap; needs root for the frame numbers, 0
    without). Summed VmRSS counts a page shared by two processes (the binary's
    code in a server and its client, libc) twice."""
    frames: set[int] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            with open(f"/proc/{pid}/pagemap", "rb") as pm:
                for line in maps:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    if "[vsyscall]" in line:
                        continue
                    pm.seek(lo // PAGE * 8)
                    data = pm.read((hi - lo) // PAGE * 8)
                    for (e,) in struct.iter_unpack("<Q", data):
                        if e >> 63 & 1:
                            pfn = e & ((1 << 55) - 1)
                            if pfn == 0:
                                return 0  # no frame numbers without root
                            frames.add(pfn)
        except (OSError, ValueError):
            continue
    return len(frames) * PAGE


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return s[s.rfind(")") + 2] != "Z"


def tagged_pids() -> list[int]:
    """Every process started by this run (they all carry MEW_BENCH_TAG=RUN_ID)."""
    me = os.getpid()
    needle = f"{TAG}={RUN_ID}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            env = Path(f"/proc/{d}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            out.append(int(d))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def find_tagged(argv: list[str]) -> list[int]:
    return [p for p in tagged_pids() if cmdline(p) == argv and alive(p)]


def children_of(pid: int) -> list[int]:
    try:
        out = []
        for t in os.listdir(f"/proc/{pid}/task"):
            c = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
            out += [int(x) for x in c]
        return out
    except OSError:
        return []


def reap_all(grace: float = 0.0):
    """Kill (by pid) every process this run started and still alive."""
    if grace:
        time.sleep(grace)
    for _ in range(50):
        pids = [p for p in tagged_pids() if alive(p)]
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def wait_until(cond, timeout: float, step: float = 0.002, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def run(cmd, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, timeout=timeout, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- FIFO end signal


class Fifo:
    """Workloads write `done` into it when they have finished writing."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            path.unlink()
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def wait(self, count: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.buf.count(b"done") < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"only {self.buf.count(b'done')}/{count} workloads finished in {timeout:.0f}s")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                self.buf += os.read(self.fd, 65536)
        return time.monotonic()

    def close(self):
        os.close(self.fd)


# ---------------------------------------------------------------- statistics


def summary(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


# ---------------------------------------------------------------- tools
#
# Each tool knows how to start a set of named shell commands and how to stop
# them, and which processes are "the orchestrator" (whose CPU and RSS count).


def q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class Tool:
    name = "?"
    label = "?"
    supports = {"throughput", "fanout", "idle", "scale", "orphans"}

    def available(self) -> str | None:
        return None

    def prepare(self, d: Path, cmds: dict[str, str]):
        pass

    def start(self, d: Path, cmds: dict[str, str]):
        raise NotImplementedError

    def orch_pids(self) -> list[int]:
        return []

    def stop(self):
        """Issue the tool's normal stop; returns a Popen (or None) to wait on."""
        return None

    def cleanup_cmd(self):
        """After kill -9 of the orchestrator: its own cleanup command (or None)."""
        return None

    def kill9_target(self) -> list[int]:
        return self.orch_pids()


class Floor(Tool):
    name, label = "floor", "output to /dev/null (floor)"
    supports = {"throughput", "fanout"}

    def start(self, d, cmds):
        self.procs = [
            subprocess.Popen(["sh", "-c", c], env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            for c in cmds.values()
        ]


class Script(Tool):
    name, label = "script", "bare PTY (script -qfc)"
    supports = {"throughput", "fanout", "idle"}

    def available(self):
        return None if shutil.which("script") else "script(1) not installed"

    def start(self, d, cmds):
        self.procs = [
            subprocess.Popen(
                ["script", "-qfc", c, "/dev/null"],
                env=ENV,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for c in cmds.values()
        ]

    def orch_pids(self):
        return [p.pid for p in self.procs]


class ShellLoop(Tool):
    name, label = "shell", "plain shell loop"
    supports = {"scale"}

    def start(self, d, cmds):
        script = "".join(f"sh -c {q(c)} &\n" for c in cmds.values()) + "wait\n"
        self.p = subprocess.Popen(["sh", "-c", script], env=ENV, stdin=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)

    def stop(self):
        pids = " ".join(str(p) for p in find_tagged(["sleep", "600"]))
        if not pids:
            return None
        return subprocess.Popen(["sh", "-c", f"kill {pids}"], env=ENV)

    def orch_pids(self):
        return [self.p.pid]


def tmux(*args, check=True, timeout=60):
    r = run(["tmux", "-L", TMUX_SOCK, "-f", "/dev/null", *args], timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args[:2])}: {r.stderr.strip()}")
    return r


def tmux_argv(*args) -> list[str]:
    return ["tmux", "-L", TMUX_SOCK, "-f", "/dev/null", *args]


class Tmux(Tool):
    name, label = "tmux", "tmux (one window each, no client)"

    def available(self):
        return None if shutil.which("tmux") else "tmux not installed"

    def start(self, d, cmds):
        args = ["new-session", "-d", "-x", str(COLS), "-y", str(ROWS)]
        first = True
        for c in cmds.values():
            if not first:
                args += [";", "new-window", "-d"]
            args.append(c)
            first = False
        # a long list of windows goes through a command file
        if len(cmds) > 20:
            f = d / "tmux.conf"
            lines = []
            for i, c in enumerate(cmds.values()):
                verb = "new-session -d -x 200 -y 50" if i == 0 else "new-window -d"
                lines.append(f"{verb} {q(c)}")
            f.write_text("\n".join(lines) + "\n")
            self.p = subprocess.Popen(
                tmux_argv("start-server", ";", "source-file", str(f)), env=ENV, stdin=subprocess.DEVNULL
            )
        else:
            self.p = subprocess.Popen(tmux_argv(*args), env=ENV, stdin=subprocess.DEVNULL)
        self._pid = None

    def orch_pids(self):
        if self._pid is None:
            r = tmux("display-message", "-p", "#{pid}", check=False)
            if r.returncode == 0 and r.stdout.strip().isdigit():
                self._pid = int(r.stdout.strip())
        return [self._pid] if self._pid else []

    def stop(self):
        self.orch_pids()
        return subprocess.Popen(tmux_argv("kill-server"), env=ENV, stderr=subprocess.DEVNULL)


def write_space(d: Path, cmds: dict[str, str]):
    (d / ".mew").mkdir(parents=True, exist_ok=True)
    lines = ["space: { id: bench }", "processes:"]
    for n, c in cmds.items():
        lines.append(f"  {n}: {{ command: {json.dumps(c)} }}")
    (d / ".mew" / "space.yaml").write_text("\n".join(lines) + "\n")


def mew_server_pid(d: Path) -> int | None:
    try:
        return int(json.loads((d / ".mew" / "run" / "state.json").read_text())["server_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class MewNoTui(Tool):
    name, label = "mew-notui", "mew --no-tui (stdout /dev/null)"
    supports = {"throughput", "fanout", "idle"}
    to_file = False

    def available(self):
        return None if MEW.exists() else f"{MEW} not built"

    def prepare(self, d, cmds):
        write_space(d, cmds)

    def start(self, d, cmds):
        self.d = d
        out = open(d / "out.txt", "wb") if self.to_file else subprocess.DEVNULL
        self.p = subprocess.Popen(
            [str(MEW), "space", "up", "--no-tui", "--space-dir", str(d)],
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )

    def orch_pids(self):
        return [self.p.pid]

    def stop(self):
        return subprocess.Popen([str(MEW), "space", "down", "--space-dir", str(self.d)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cleanup_cmd(self):
        return [str(MEW), "space", "down", "--space-dir", str(self.d)]


class MewNoTuiFile(MewNoTui):
    name, label = "mew-notui-file", "mew --no-tui (stdout to a file)"
    to_file = True
    supports = {"throughput", "fanout"}


class MewDaemon(MewNoTui):
    name, label = "mew", "mew up -d (server, no client)"
    supports = {"scale", "orphans", "idle"}

    def start(self, d, cmds):
        self.d = d
        self.p = subprocess.Popen(
            [str(MEW), "space", "up", "-d", "--space-dir", str(d)],
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._pid = None

    def orch_pids(self):
        if self._pid is None:
            self._pid = mew_server_pid(self.d)
        return [self._pid] if self._pid else []


class MewTui(MewNoTui):
    name, label = "mew-tui", "mew TUI attached (in tmux 200x50)"
    supports = {"throughput", "fanout", "idle"}

    def start(self, d, cmds):
        self.d = d
        self.p = subprocess.Popen(
            tmux_argv("new-session", "-d", "-x", str(COLS), "-y", str(ROWS),
                      f"exec {q(str(MEW))} space up --space-dir {q(str(d))}"),
            env=ENV,
            stdin=subprocess.DEVNULL,
        )
        self._pids = None

    def orch_pids(self):
        if self._pids is None:
            server = mew_server_pid(self.d)
            r = tmux("display-message", "-p", "#{pane_pid}", check=False)
            client = int(r.stdout.strip()) if r.stdout.strip().isdigit() else None
            if server and client:
                self._pids = [server, client]
            else:
                return [p for p in (server, client) if p]
        return self._pids

    def stop(self):
        p = subprocess.Popen([str(MEW), "space", "down", "--space-dir", str(self.d)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p


class Mprocs(Tool):
    name, label = "mprocs", "mprocs (in tmux 200x50)"

    def available(self):
        return None if (TOOLS / "bin" / "mprocs").exists() else "mprocs not installed (cargo install mprocs --root bench/.tools)"

    def prepare(self, d, cmds):
        lines = ["procs:"]
        for n, c in cmds.items():
            lines.append(f"  {n}:\n    shell: {json.dumps(c)}")
        (d / "mprocs.yaml").write_text("\n".join(lines) + "\n")

    def start(self, d, cmds):
        self.p = subprocess.Popen(
            tmux_argv("new-session", "-d", "-x", str(COLS), "-y", str(ROWS),
                      f"exec {q(str(TOOLS / 'bin' / 'mprocs'))} --config {q(str(d / 'mprocs.yaml'))}"),
            env=ENV, stdin=subprocess.DEVNULL)
        self._pid = None

    def orch_pids(self):
        if self._pid is None:
            r = tmux("display-message", "-p", "#{pane_pid}", check=False)
            if r.stdout.strip().isdigit():
                self._pid = int(r.stdout.strip())
        return [self._pid] if self._pid else []

    def stop(self):
        self.orch_pids()
        # q asks every process to stop and quits once they have
        return subprocess.Popen(tmux_argv("send-keys", "q"), env=ENV)


class Pm2(Tool):
    name, label = "pm2", "PM2 (pipes, daemon)"

    def available(self):
        return None if shutil.which("pm2", path=ENV["PATH"]) else "pm2 not installed (npm)"

    _pid = None

    def prepare(self, d, cmds):
        self._pid = None
        home = Path(ENV["PM2_HOME"])
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        apps = [{"name": n, "script": "/bin/sh", "args": ["-c", c], "interpreter": "none",
                 "autorestart": False} for n, c in cmds.items()]
        (d / "eco.json").write_text(json.dumps({"apps": apps}))
        # the daemon is started before the clock: PM2 is meant to run all the time
        r = run(["pm2", "ping"], timeout=60)
        if r.returncode != 0:
            raise Unavailable(f"pm2 ping failed: {r.stderr.strip()[:200]}")

    def start(self, d, cmds):
        self.p = subprocess.Popen(["pm2", "start", str(d / "eco.json")], env=ENV,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._pid = None

    def orch_pids(self):
        if self._pid is None:
            try:
                self._pid = int((Path(ENV["PM2_HOME"]) / "pm2.pid").read_text().strip())
            except (OSError, ValueError):
                return []
        return [self._pid]

    def stop(self):
        self.orch_pids()
        return subprocess.Popen(["pm2", "stop", "all"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cleanup_cmd(self):
        return ["pm2", "kill"]


class PipeTool(Tool):
    """Foreground tools that read their children through pipes; stopped with SIGINT."""

    exe = ""

    def available(self):
        return None if shutil.which(self.exe, path=ENV["PATH"]) else f"{self.exe} not installed"

    def prepare(self, d, cmds):
        (d / "Procfile").write_text("".join(f"{n}: {c}\n" for n, c in cmds.items()))

    def argv(self, d, cmds) -> list[str]:
        raise NotImplementedError

    def start(self, d, cmds):
        self.p = subprocess.Popen(self.argv(d, cmds), env=ENV, cwd=d, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def orch_pids(self):
        return [self.p.pid]

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        return self.p


class Honcho(PipeTool):
    name, label, exe = "honcho", "honcho (pipes)", "honcho"

    def argv(self, d, cmds):
        return [shutil.which("honcho", path=ENV["PATH"]), "-f", str(d / "Procfile"), "start"]


class Foreman(PipeTool):
    name, label, exe = "nf", "node-foreman (pipes)", "nf"

    def argv(self, d, cmds):
        return [shutil.which("nf", path=ENV["PATH"]), "start", "-j", str(d / "Procfile")]


class Concurrently(PipeTool):
    name, label, exe = "concurrently", "concurrently (pipes)", "concurrently"

    def argv(self, d, cmds):
        return [shutil.which("concurrently", path=ENV["PATH"]), "-n", ",".join(cmds), *cmds.values()]


ALL_TOOLS = [Floor(), Script(), ShellLoop(), Tmux(), MewNoTui(), MewNoTuiFile(), MewTui(), MewDaemon(),
             Mprocs(), Pm2(), Honcho(), Foreman(), Concurrently()]


# ---------------------------------------------------------------- workloads


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.reps = args.reps or (3 if args.quick else 5)
        self.results: dict = {"workloads": {}}
        self.tools = [t for t in ALL_TOOLS if not args.tools or t.name in args.tools.split(",")]
        self.counter = 0

    def dir(self, label: str) -> Path:
        self.counter += 1
        d = WORK / f"{self.counter:04d}-{label}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def record(self, wl: str, tool: str, data: dict):
        self.results["workloads"].setdefault(wl, {})[tool] = data
        self.save()

    def save(self):
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(self.results, indent=1))

    def measurable(self, wl: str, tools=None) -> list:
        """The tools that take part in `wl`; the unavailable ones are recorded as such."""
        kind = "throughput" if wl == "big" else wl.split(":")[0]
        out = []
        for t in tools or self.tools:
            if kind not in t.supports:
                continue
            why = t.available()
            if why:
                self.record(wl, t.name, {"label": t.label, "error": why})
                log(f"  {wl} {t.name}: not measured: {why}")
                continue
            out.append(t)
        return out

    def done(self, wl: str, t, data: dict):
        data["label"] = t.label
        self.record(wl, t.name, data)
        log(f"  {wl} {t.name}: " + ", ".join(
            f"{k}={v['median']:.4g}" for k, v in data.items() if isinstance(v, dict) and "median" in v))

    def failed(self, wl: str, t, e: Exception):
        self.record(wl, t.name, {"label": t.label, "error": f"{type(e).__name__}: {e}"})
        log(f"  {wl} {t.name}: FAILED: {e}")
        if self.args.verbose:
            traceback.print_exc()

    def each_tool(self, wl: str, fn, tools=None):
        for t in self.measurable(wl, tools):
            try:
                self.done(wl, t, fn(t))
            except (Unavailable, Timeout, RuntimeError, OSError, subprocess.SubprocessError) as e:
                self.failed(wl, t, e)
            finally:
                reap_all()

    def each_tool_interleaved(self, wl: str, sample, tools=None):
        """Like each_tool, but repetition-major: repetition 1 of every tool,
        then repetition 2 of every tool... so a burst of load from elsewhere
        on the machine spreads over all tools instead of skewing one tool's
        ratio. `sample(t)` measures once and returns {key: value}; a key is
        summarised when every repetition has it (and, for once_mb, when it
        could be read)."""
        live = self.measurable(wl, tools)
        samples = {t.name: [] for t in live}
        failed = set()
        for rep in range(self.reps):
            for t in live:
                if t.name in failed:
                    continue
                try:
                    samples[t.name].append(sample(t))
                except (Unavailable, Timeout, RuntimeError, OSError, subprocess.SubprocessError) as e:
                    failed.add(t.name)
                    self.failed(wl, t, e)
                finally:
                    reap_all()
        for t in live:
            if t.name in failed:
                continue
            got = samples[t.name]
            keys = set(got[0]) if got else set()
            for g in got[1:]:
                keys &= set(g)
            self.done(wl, t, {k: summary([g[k] for g in got]) for k in sorted(keys)
                              if not (k == "once_mb" and any(g[k] <= 0 for g in got))})

    # -- throughput and fan-out: N processes x L lines, time until all have written

    def lines(self, wl: str, nprocs: int, nlines: int, tools=None):
        log(f"{wl}: {nprocs} x {nlines} lines")

        def sample(t: Tool):
            d = self.dir(f"{wl.replace(':', '-')}-{t.name}")
            fifo = Fifo(d / "done.fifo")
            cmds = {f"p{i:02d}": f"sh {WL}/lines.sh {nlines} {d}/done.fifo; exec sleep 600"
                    for i in range(nprocs)}
            try:
                t.prepare(d, cmds)
                cpu0 = None
                if isinstance(t, Pm2):
                    cpu0 = sum(proc_cpu(p) for p in t.orch_pids() or [])
                t0 = time.monotonic()
                t.start(d, cmds)
                t1 = fifo.wait(nprocs, timeout=600)
                pids = t.orch_pids()
                cpu = sum(proc_cpu(p) for p in pids)
                if cpu0 is not None:
                    cpu -= cpu0
                r = {"time_s": t1 - t0}
                if pids:
                    r["cpu_s"] = cpu
                elif not isinstance(t, Floor):
                    raise RuntimeError("could not find the orchestrator's processes")
                return r
            finally:
                fifo.close()
                self.stop_quietly(t)

        self.each_tool_interleaved(wl, sample, tools)

    def stop_quietly(self, t: Tool):
        try:
            p = t.stop()
            if p is not None:
                p.wait(timeout=30)
        except Exception:  # a tool whose start failed has nothing to stop
            pass
        if isinstance(t, (MewTui, Mprocs)):
            tmux("kill-server", check=False)
        reap_all()

    # -- idle: 20 processes printing a line every 100 ms

    def idle(self):
        window = 5.0 if self.quick else 15.0
        warm = 2.0
        log(f"idle: 20 x tick.sh, {window:.0f}s window")

        def sample(t: Tool):
            d = self.dir(f"idle-{t.name}")
            cmds = {f"p{i:02d}": f"sh {WL}/tick.sh p{i:02d}" for i in range(20)}
            try:
                t.prepare(d, cmds)
                t.start(d, cmds)
                time.sleep(warm)
                pids = t.orch_pids()
                if not pids:
                    raise RuntimeError("could not find the orchestrator's processes")
                c0, w0 = sum(proc_cpu(p) for p in pids), time.monotonic()
                time.sleep(window)
                c1, w1 = sum(proc_cpu(p) for p in pids), time.monotonic()
                return {"cpu_pct": 100.0 * (c1 - c0) / (w1 - w0),
                        "rss_mb": sum(proc_rss(p) for p in pids) / 1e6,
                        "once_mb": mapped_once(pids) / 1e6}
            finally:
                self.stop_quietly(t)

        self.each_tool_interleaved("idle", sample)

    # -- scale: N x sleep 600, up until all marked, stop until none left

    def scale(self, n: int):
        wl = f"scale:{n}"
        log(f"{wl}: {n} x sleep 600")

        def sample(t: Tool):
            d = self.dir(f"scale{n}-{t.name}")
            marks = d / "marks"
            marks.mkdir()
            cmds = {f"p{i:03d}": f"sh {WL}/idle.sh {marks} p{i:03d}" for i in range(n)}
            try:
                t.prepare(d, cmds)
                t0 = time.monotonic()
                t.start(d, cmds)
                t1 = wait_until(lambda: len(os.listdir(marks)) >= n, 120, 0.002, f"{n} markers")
                r = {"up_s": t1 - t0}
                # the markers come just before exec: wait for the sleeps themselves
                wait_until(lambda: len(find_tagged(["sleep", "600"])) >= n, 30, 0.01, "the sleeps")
                sleeps = find_tagged(["sleep", "600"])
                time.sleep(0.3)
                pids = t.orch_pids()
                r["rss_mb"] = sum(proc_rss(p) for p in pids) / 1e6
                s0 = time.monotonic()
                p = t.stop()
                s1 = wait_until(lambda: not any(alive(x) for x in sleeps), 60, 0.001, "every sleep to end")
                r["down_s"] = s1 - s0
                if p is not None:
                    p.wait(timeout=60)
                    r["stop_cmd_s"] = time.monotonic() - s0
                return r
            finally:
                self.stop_quietly(t)

        self.each_tool_interleaved(wl, sample)

    # -- orphans

    def orphans(self):
        log("orphans: sleep A & (trap '' HUP TERM; sleep B) & setsid sleep C & exec sleep D")
        names = {"7101": "A (background)", "7102": "B (ignores HUP/TERM)", "7103": "C (setsid)",
                 "7104": "D (exec)"}

        def survivors():
            out = []
            for p in tagged_pids():
                c = cmdline(p)
                if len(c) == 2 and c[0] == "sleep" and c[1] in names and alive(p):
                    out.append(c[1])
            return sorted(out)

        def one(t: Tool):
            res = {}
            for mode in ("stop", "kill9"):
                d = self.dir(f"orphans-{t.name}-{mode}")
                cmds = {"orphans": f"sh {WL}/orphans.sh"}
                try:
                    t.prepare(d, cmds)
                    t.start(d, cmds)
                    wait_until(lambda: len(survivors()) == 4, 30, 0.01, "the four sleeps")
                    time.sleep(0.3)
                    if mode == "stop":
                        p = t.stop()
                        if p is not None:
                            try:
                                p.wait(timeout=15)
                            except subprocess.TimeoutExpired:
                                res["stop_note"] = "the tool had not exited 15 s after its stop"
                    else:
                        for pid in t.kill9_target():
                            os.kill(pid, signal.SIGKILL)
                        time.sleep(0.2)
                        c = t.cleanup_cmd()
                        if c is not None:
                            run(c, timeout=60)
                        else:
                            res["cleanup"] = "none"
                    time.sleep(1.0)
                    res[mode] = survivors()
                finally:
                    if isinstance(t, (MewTui, Mprocs, Tmux)):
                        tmux("kill-server", check=False)
                    reap_all()
            return res

        self.each_tool("orphans", one)

    # -- mew only: up -d --wait, status, down; attach; keystrokes

    def control(self):
        """Issue 4: up -d --wait for 1 and 100, status latency, down for 100."""
        if not MEW.exists():
            return
        log("control: mew up -d --wait / status / down")
        out = {}
        for n in (1, 100):
            ups, downs, shell_ups, shell_downs, st, ps = [], [], [], [], [], []
            for rep in range(self.reps):
                d = self.dir(f"control{n}")
                marks = d / "marks"
                marks.mkdir()
                cmds = {f"p{i:03d}": f"sh {WL}/idle.sh {marks} p{i:03d}" for i in range(n)}
                write_space(d, cmds)
                try:
                    t0 = time.monotonic()
                    r = run([str(MEW), "space", "up", "-d", "--wait", "--space-dir", str(d)], timeout=120)
                    ups.append(time.monotonic() - t0)
                    if r.returncode != 0:
                        raise RuntimeError(f"up -d --wait failed: {r.stderr.strip()[:300]}")
                    if n == 100:
                        sleeps = find_tagged(["sleep", "600"])
                        calls = 10 if self.quick else 30
                        for _ in range(calls):
                            a = time.monotonic()
                            run([str(MEW), "space", "status", "--json", "--space-dir", str(d)])
                            st.append(time.monotonic() - a)
                            a = time.monotonic()
                            run(["ps", "-o", "pid=,stat=,rss=,etimes=", "-p", ",".join(map(str, sleeps))])
                            ps.append(time.monotonic() - a)
                    t0 = time.monotonic()
                    r = run([str(MEW), "space", "down", "--space-dir", str(d)], timeout=120)
                    downs.append(time.monotonic() - t0)
                finally:
                    reap_all()
                # the same with a shell loop: start in the background, wait for the markers; kill
                d = self.dir(f"control{n}-shell")
                marks = d / "marks"
                marks.mkdir()
                body = "".join(f"sh {WL}/idle.sh {marks} p{i:03d} &\n" for i in range(n))
                t0 = time.monotonic()
                sh = subprocess.Popen(["sh", "-c", body + "wait\n"], env=ENV)
                wait_until(lambda: len(os.listdir(marks)) >= n, 60, 0.001, "markers")
                shell_ups.append(time.monotonic() - t0)
                sleeps = wait_until(lambda: len(find_tagged(["sleep", "600"])) >= n, 30, 0.01, "sleeps")
                sleeps = find_tagged(["sleep", "600"])
                t0 = time.monotonic()
                subprocess.run(["sh", "-c", "kill " + " ".join(map(str, sleeps))], env=ENV)
                wait_until(lambda: not any(alive(x) for x in sleeps), 30, 0.001, "sleeps to end")
                shell_downs.append(time.monotonic() - t0)
                sh.wait(timeout=30)
                reap_all()
            out[f"up_wait_{n}_s"] = summary(ups)
            out[f"shell_up_{n}_s"] = summary(shell_ups)
            out[f"down_{n}_s"] = summary(downs)
            out[f"shell_down_{n}_s"] = summary(shell_downs)
            if st:
                out["status_100_s"] = summary(st)
                out["ps_100_s"] = summary(ps)
            self.record("control", "mew", out)
        log("  control: " + ", ".join(f"{k}={v['median']:.4g}" for k, v in out.items()))

    def attach(self):
        log("attach: 100 processes, time to first complete frame; keystroke echo")
        res = {}
        d = self.dir("attach")
        marks = d / "marks"
        marks.mkdir()
        cmds = {f"p{i:03d}": f"sh {WL}/idle.sh {marks} p{i:03d}" for i in range(100)}
        write_space(d, cmds)
        try:
            r = run([str(MEW), "space", "up", "-d", "--wait", "--space-dir", str(d)], timeout=120)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            frames = []
            for rep in range(max(self.reps, 5)):
                t0 = time.monotonic()
                pid, fd = spawn_pty([str(MEW), "space", "attach", "--space-dir", str(d)])
                buf = b""
                try:
                    buf = read_until(fd, lambda b: b"quit" in b, 10)
                    frames.append(time.monotonic() - t0)
                finally:
                    end_pty(pid, fd, b"d")
            res["first_frame_s"] = summary(frames)
            run([str(MEW), "space", "down", "--space-dir", str(d)], timeout=120)
        except (RuntimeError, Timeout, OSError) as e:
            res["first_frame_error"] = str(e)
        finally:
            reap_all()
        # keystroke to echo: the same raw-mode cat in a bare PTY and focused in mew
        n = 200
        try:
            pid, fd = spawn_pty(["sh", str(WL / "cat_raw.sh")])
            try:
                echo_ready(fd)
                res["echo_bare_s"] = summary(keystrokes(fd, n))
            finally:
                end_pty(pid, fd, None)
            d = self.dir("echo")
            write_space(d, {"cat": f"sh {WL}/cat_raw.sh"})
            r = run([str(MEW), "space", "up", "-d", "--wait", "--space-dir", str(d)], timeout=60)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            pid, fd = spawn_pty([str(MEW), "space", "attach", "--space-dir", str(d)])
            try:
                read_until(fd, lambda b: b"quit" in b, 10)
                os.write(fd, b"\r")  # Enter: focus the selected (only) process
                read_until(fd, lambda b: b"FOCUS" in b, 10)
                time.sleep(0.3)
                res["echo_mew_s"] = summary(keystrokes(fd, n))
            finally:
                end_pty(pid, fd, b"\x02d")
            run([str(MEW), "space", "down", "--space-dir", str(d)], timeout=60)
        except (RuntimeError, Timeout, OSError) as e:
            res["echo_error"] = str(e)
        finally:
            reap_all()
        self.record("attach", "mew", res)
        log("  attach: " + ", ".join(
            f"{k}={v['median'] * 1000:.2f}ms" if isinstance(v, dict) else f"{k}={v}" for k, v in res.items()))


# ---------------------------------------------------------------- PTY helpers


def spawn_pty(argv: list[str]) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, ENV)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    return pid, fd


def read_until(fd: int, cond, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not cond(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"no expected output in {timeout:.0f}s; got {buf[-200:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                raise Timeout("the terminal closed")
            if not chunk:
                raise Timeout("the terminal closed")
            buf += chunk
    return buf


def drain(fd: int, quiet: float = 0.05):
    while select.select([fd], [], [], quiet)[0]:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def echo_ready(fd: int):
    """Wait until the raw-mode cat echoes (stty has run)."""
    for _ in range(100):
        os.write(fd, b"#")
        try:
            read_until(fd, lambda b: b"#" in b, 0.1)
            drain(fd)
            return
        except Timeout:
            continue
    raise Timeout("the echo program never echoed")


def keystrokes(fd: int, n: int) -> list[float]:
    chars = b"ZXJQKV"
    out = []
    for i in range(n):
        drain(fd, 0.02)
        c = chars[i % len(chars)]
        t0 = time.monotonic()
        os.write(fd, bytes([c]))
        read_until(fd, lambda b: bytes([c]) in b, 5)
        out.append(time.monotonic() - t0)
        if i % 40 == 39:
            os.write(fd, b"\r\n")
    return out


def end_pty(pid: int, fd: int, keys: bytes | None):
    try:
        if keys:
            os.write(fd, keys)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    os.close(fd)
                    return
                drain(fd, 0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


# ---------------------------------------------------------------- main


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass

    def ver(argv):
        try:
            r = run(argv, timeout=30)
            lines = [x for x in (r.stdout or r.stderr).strip().splitlines() if x.strip()]
            return lines[-1] if argv[0] == "pm2" else lines[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            "mew": ver([str(MEW), "--version"]),
            "tmux": ver(["tmux", "-V"]),
            "script": ver(["script", "--version"]),
            "mprocs": ver([str(TOOLS / "bin" / "mprocs"), "--version"]),
            "pm2": ver(["pm2", "--version"]),
            "honcho": ver(["honcho", "--version"]),
            "node-foreman": ver(["nf", "--version"]),
            "concurrently": ver(["concurrently", "--version"]),
            "node": ver(["node", "--version"]),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repetitions, smaller N, 5 s idle window")
    ap.add_argument("--reps", type=int, help="repetitions per measurement")
    ap.add_argument("--only", help="comma-separated: throughput,big,fanout,idle,scale,orphans,control,attach")
    ap.add_argument("--tools", help="comma-separated tool names (default: all)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md and the chart")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other results of bench/results/latest.json (e.g. to add one tool)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    if not args.no_build and "MEW_BENCH_BIN" not in os.environ:
        log("building: cargo build --release --locked")
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    if not MEW.exists():
        log(f"warning: {MEW} is missing; mew will not be measured")
    WORK.mkdir(parents=True, exist_ok=True)
    b = Bench(args)
    if args.merge and (RESULTS / "latest.json").exists():
        b.results = json.loads((RESULTS / "latest.json").read_text())
        b.results.setdefault("workloads", {})
    only = set(args.only.split(",")) if args.only else None

    def want(w):
        return only is None or w in only

    if args.merge:
        # The binary of the newest measurement is the one that ships.
        b.results["binary_size"] = MEW.stat().st_size if MEW.exists() else None
        b.results.setdefault("merged", []).append({
            "run_id": RUN_ID, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "workloads": sorted(only) if only else "all",
            "tools": args.tools or "all",
            "binary_size": MEW.stat().st_size if MEW.exists() else None})
    b.results.update({} if args.merge else {
        "run_id": RUN_ID,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "mode": "quick" if args.quick else "full",
        "reps": b.reps,
        "machine": machine(),
        "binary_size": MEW.stat().st_size if MEW.exists() else None,
    })
    n_tp = 100_000 if args.quick else 400_000
    n_big = 500_000 if args.quick else 2_000_000
    n_fan = 5_000 if args.quick else 20_000
    if not args.merge:
        b.results["params"] = {"throughput_lines": n_tp, "big_lines": n_big, "fanout_lines": n_fan,
                               "idle_window_s": 5 if args.quick else 15}
    started = time.monotonic()
    try:
        if want("throughput"):
            b.lines("throughput", 1, n_tp)
        if want("big"):
            b.lines("big", 1, n_big, tools=[t for t in b.tools if t.name in ("script", "mew-notui", "floor")])
        if want("fanout"):
            b.lines("fanout", 20, n_fan)
        if want("idle"):
            b.idle()
        if want("scale"):
            b.scale(100)
            b.scale(500)
        if want("orphans"):
            b.orphans()
        if want("control"):
            b.control()
        if want("attach"):
            b.attach()
    finally:
        reap_all()
        tmux("kill-server", check=False)
        b.results["duration_s"] = round(time.monotonic() - started + (b.results.get("duration_s") or 0)
                                        * args.merge, 1)
        b.save()
    log(f"done in {b.results['duration_s']:.0f}s: {RESULTS / 'latest.json'}")
    if not args.no_docs:
        import report

        report.write(b.results)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
