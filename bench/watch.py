#!/usr/bin/env python3
"""The `watch:` benchmark (issue #17): mew's file watcher against a bare
`inotifywait` + restart shell loop (`watchexec` too, when a binary is on PATH).

Usage: python3 bench/watch.py [--reps N] [--idle-seconds S] [--files N]
                              [--mew-cmd TEMPLATE] [--no-build] [--quick]

(a) Latency: from a file write to the restarted process running. The process
    under test is `child.sh` (in a temporary directory): it appends `date +%s%N` to a
    file and execs `sleep`; the latency is that timestamp minus the time just
    before the write (both CLOCK_REALTIME).
(b) Idle CPU: user+sys of the watcher's processes (its whole session, less the
    `sleep` child) over S seconds with N files under watch (plus N files in
    an ignored `target/`), from /proc/PID/stat. Target: <= 0.1 % of a core.

The tree: `src/` with N files in N/100 directories, and `target/` (ignored by
every tool) with as many.

Two mew rows per debounce:
- `mew space up --no-tui`: the real thing. A space (in its own directory)
  whose one process is the child, `cwd:` the tree, `watch: { paths: [src],
  debounce: …ms }`; it is ready when it prints "watching src". --mew-bin is
  the binary (default: the release build; --no-build leaves it as it is).
  Stopped with SIGTERM (its children live in sessions of their own).
- the watcher alone (`examples/watch_latency.rs`), restarting its child
  itself, or what --mew-cmd says; placeholders: {dir} (the tree), {child}
  (the process to restart), {debounce_ms}. It must print a line containing
  `ready` on stdout once its watches are in place. `--mew-cmd none` leaves
  this row out.

This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Outside the repository: a tree of 20,000 files must not show in `git status`.
WORK = Path(tempfile.mkdtemp(prefix="mew-watch-bench-"))
RESULTS = ROOT / "bench" / "results"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
EXCLUDE = r"(^|/)(\.git|\.mew|target|node_modules)(/|$)"

DEFAULT_MEW = str(TARGET / "release" / "examples" / "watch_latency") + " --debounce-ms {debounce_ms} {dir} -- {child}"

# The classic loop: restart on the first event, set the watches up again.
INOTIFY_LOOP = r"""
child="$1"; dir="$2"
"$child" & pid=$!
while inotifywait -r -e modify,close_write,create,delete,move --exclude '%s' "$dir" >/dev/null; do
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  "$child" & pid=$!
done
""" % EXCLUDE


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def session_procs(sid: int) -> list[tuple[int, str, list[str]]]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            s = (p / "stat").read_text()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        fields = s[s.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            out.append((int(p.name), comm, fields))
    return out


def is_child(pid: int, comm: str) -> bool:
    """The process under test (child.sh, then its `sleep`), not the tool."""
    if comm == "sleep":
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"child.sh") for a in argv[:2])


def session_cpu(sid: int) -> float:
    """user+sys seconds of the tool's own processes (the sleep child excluded)."""
    return sum((int(f[11]) + int(f[12])) / CLK for pid, comm, f in session_procs(sid) if not is_child(pid, comm))


def session_cpu_ns(sid: int) -> int:
    """The same from /proc/PID/task/*/schedstat: nanoseconds, not 10 ms ticks."""
    total = 0
    for pid, comm, _ in session_procs(sid):
        if is_child(pid, comm):
            continue
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def session_rss_kib(sid: int) -> int:
    return sum(int(f[21]) * PAGE // 1024 for pid, comm, f in session_procs(sid) if not is_child(pid, comm))


def make_tree(root: Path, files: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    per = 100
    for top in ("src", "target"):
        for d in range(max(1, files // per)):
            sub = root / top / f"d{d:03}"
            sub.mkdir(parents=True)
            for f in range(per):
                (sub / f"f{f:03}.rs").write_text("x\n")
    (root / "src" / "main.rs").write_text("fn main() {}\n")


class Tool:
    def __init__(self, name: str, argv: list[str], ready: str, stream: str, graceful: bool = False):
        self.name, self.argv, self.ready, self.stream = name, argv, ready, stream
        # A mew server: stopped with SIGTERM, so it stops its processes.
        self.graceful = graceful
        self.proc: subprocess.Popen | None = None
        self.out = WORK / f"{name.replace(' ', '_')}.out"

    def start(self) -> float:
        """Starts it; returns the seconds until its watches were in place."""
        t0 = time.monotonic()
        with open(self.out, "wb") as out:
            kw = {"stdout": out, "stderr": subprocess.STDOUT}
            self.proc = subprocess.Popen(self.argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.wait_ready(1)
        return time.monotonic() - t0

    def ready_count(self) -> int:
        try:
            return self.out.read_text(errors="replace").count(self.ready)
        except OSError:
            return 0

    def wait_ready(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.ready_count() < n:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.out.read_text(errors='replace')[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not ready after {timeout}s")
            time.sleep(0.005)

    def stop(self) -> None:
        if self.proc is None:
            return
        sid = self.proc.pid
        if self.graceful:
            os.kill(sid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
                self.proc = None
                return
            except subprocess.TimeoutExpired:
                pass
        for pid, _, _ in session_procs(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self.proc = None


def starts(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


def wait_starts(path: Path, n: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        s = starts(path)
        if len(s) >= n:
            return s
        if time.monotonic() > deadline:
            raise RuntimeError(f"no restart within {timeout}s")
        time.sleep(0.001)


def measure(tool: Tool, tree: Path, starts_file: Path, reps: int, settle: float, idle_s: float) -> dict:
    starts_file.write_text("")
    ready_s = tool.start()
    wait_starts(starts_file, 1)
    lat = []
    for i in range(reps):
        # The inotifywait loop sets its watches up again after each restart:
        # a write before that is lost, so wait for it (mew keeps its watches).
        if tool.stream == "loop":
            tool.wait_ready(i + 1)
        time.sleep(settle)
        n = len(starts(starts_file))
        target = tree / "src" / f"d{i % 10:03}" / "f000.rs"
        t0 = time.time_ns()
        target.write_text(f"{i}\n")
        s = wait_starts(starts_file, n + 1)
        lat.append((s[n] - t0) / 1e6)
    if tool.stream == "loop":
        tool.wait_ready(reps + 1)
    time.sleep(max(settle, 1.0))
    sid = tool.proc.pid if tool.proc else 0
    c0, n0, t0 = session_cpu(sid), session_cpu_ns(sid), time.monotonic()
    time.sleep(idle_s)
    c1, n1, t1 = session_cpu(sid), session_cpu_ns(sid), time.monotonic()
    rss = session_rss_kib(sid)
    tool.stop()
    return {
        "ready_s": ready_s,
        "latency_ms": lat,
        "idle_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
        "idle_cpu_s": c1 - c0,
        "idle_cpu_pct_schedstat": (n1 - n0) / 1e9 / (t1 - t0) * 100,
        "idle_window_s": t1 - t0,
        "rss_kib": rss,
    }


def fmt_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mew-cmd", default=DEFAULT_MEW, help="the watcher-alone row ('none': left out)")
    ap.add_argument("--mew-bin", default=str(TARGET / "release" / "mew"), help="the mew of the `space up --no-tui` rows")
    ap.add_argument("--debounce-ms", default="300,20,0", help="mew's debounces to measure (comma-separated)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 reps, 5 s idle window")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.idle_seconds = 5, 5
    if not a.no_build and a.mew_cmd == DEFAULT_MEW:
        subprocess.run(["cargo", "build", "--release", "--example", "watch_latency"], cwd=ROOT, check=True)
    if not a.no_build and a.mew_bin == str(TARGET / "release" / "mew"):
        subprocess.run(["cargo", "build", "--release", "--bin", "mew"], cwd=ROOT, check=True)

    WORK.mkdir(parents=True, exist_ok=True)
    tree = WORK / "tree"
    log(f"tree: {a.files} files under src/, {a.files} under target/ (ignored)")
    make_tree(tree, a.files)
    starts_file = WORK / "starts"
    child = WORK / "child.sh"
    child.write_text(f'#!/bin/sh\ndate +%s%N >> {shlex.quote(str(starts_file))}\nexec sleep 600\n')
    child.chmod(0o755)
    loop = WORK / "inotify_loop.sh"
    loop.write_text(INOTIFY_LOOP)

    tools = []
    for d in [int(x) for x in a.debounce_ms.split(",") if x]:
        space = WORK / f"space-{d}ms"
        (space / ".mew").mkdir(parents=True, exist_ok=True)
        (space / ".mew" / "space.yaml").write_text(
            "space: { id: watch-bench-%d }\n"
            "processes:\n"
            "  child:\n"
            "    command: %s\n"
            "    cwd: %s\n"
            "    watch: { paths: [src], debounce: %dms }\n" % (d, json.dumps(str(child)), json.dumps(str(tree)), d)
        )
        up = [a.mew_bin, "--space-dir", str(space), "space", "up", "--no-tui", "--timestamps", "false"]
        tools.append((f"mew space up --no-tui (debounce {d} ms)", Tool(f"mew-up-{d}ms", up, "watching src", "mew", graceful=True)))
        if a.mew_cmd != "none":
            cmd = a.mew_cmd.format(dir=shlex.quote(str(tree)), child=shlex.quote(str(child)), debounce_ms=d)
            tools.append((f"mew watcher alone (debounce {d} ms)", Tool(f"mew-{d}ms", ["sh", "-c", f"exec {cmd}"], "ready", "mew")))
    if shutil.which("inotifywait"):
        tools.append(("inotifywait loop", Tool("inotifywait", ["sh", str(loop), str(child), str(tree)], "Watches established", "loop")))
    else:
        log("inotifywait not found (apt-get install inotify-tools): the baseline is not measured")
    if shutil.which("watchexec"):
        w = ["watchexec", "-w", str(tree), "-r", "--debounce", "20ms", "-i", "**/target/**", "--", str(child)]
        log("watchexec found: measured with --debounce 20ms; readiness is taken after 2 s")
        tools.append(("watchexec (debounce 20 ms)", Tool("watchexec", ["sh", "-c", shlex.join(w) + " & sleep 2; echo ready; wait"], "ready", "mew")))
    else:
        log("watchexec not on PATH: not measured (`cargo install watchexec-cli` is too slow here)")

    results = {}
    for label, tool in tools:
        log(f"measuring {label} ...")
        try:
            results[label] = measure(tool, tree, starts_file, a.reps, 0.3, a.idle_seconds)
        finally:
            tool.stop()
    base = results.get("inotifywait loop")
    print(f"\n{a.files:,} files watched (and {a.files:,} ignored under target/), {a.reps} writes, idle window {a.idle_seconds:.0f} s\n")
    print("| tool | write → restarted, ms: median (min–max) | × loop | watches ready, s | idle CPU, % of a core: stat (schedstat) | RSS, MiB |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        ratio = f"{statistics.median(r['latency_ms']) / statistics.median(base['latency_ms']):.2f}" if base else "–"
        print(
            f"| {label} | {fmt_ms(r['latency_ms'])} | {ratio} | {r['ready_s']:.2f} | "
            f"{r['idle_cpu_pct']:.3f} ({r['idle_cpu_pct_schedstat']:.4f}) | {r['rss_kib'] / 1024:.1f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "watch.json").write_text(json.dumps({"files": a.files, "reps": a.reps, "results": results}, indent=1) + "\n")
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
