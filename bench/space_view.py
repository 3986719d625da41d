#!/usr/bin/env python3
"""What the TUI's space view costs: the CPU of mew (its server, which renders
every attached client's frames, and the attached client) with the space view
on screen while 100 envelopes a second flow, as a ratio to the same TUI
showing a process pane that prints 100 lines a second; and, for "costs
nothing when no one looks", the same flow with a quiet process pane on
screen. All in one run, interleaved, in a real terminal (tmux), with the
release binary.

    python3 bench/space_view.py [--mew target/release/mew] [--seconds 10] [--reps 3]

Prints a markdown table and writes bench/results/space_view.json. Not a test:
it asserts nothing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLK = os.sysconf("SC_CLK_TCK")
SOCK = "mew-bench-space-view"

# 100 a second: each line is an envelope (space view) or a line (pane).
TICKER = (
    'i=0; while :; do i=$((i+1)); '
    'printf \'{"kind":"chat","payload":{"text":"tick %d from the chatter, a line about this long"}}\\n\' "$i"; '
    "sleep 0.01; done"
)
PRINTER = (
    'i=0; while :; do i=$((i+1)); '
    'printf "tick %d from the printer, a line about this long\\n" "$i"; '
    "sleep 0.01; done"
)


def cpu(pid):
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = s[s.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK


def tmux(*args, check=True):
    r = subprocess.run(["tmux", "-L", SOCK, "-f", "/dev/null", *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"tmux {args[:2]}: {r.stderr.strip()}")
    return r.stdout


def wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(what)


def space_yaml(kind, mew):
    if kind == "space":
        # What the chatter's client receives goes nowhere: its pane stays
        # quiet, so what is measured is the space view, not a second pane.
        chatter = (f"{TICKER} | {mew} client connect -g ws://127.0.0.1:${{PORT}} -s bench"
                   " -p chatter > /dev/null 2>&1")
        return f"""space: {{ id: bench, default_participant: human }}
participants:
  human: {{ capabilities: [ {{ kind: "*" }} ] }}
  chatter:
    command: {json.dumps(chatter)}
    auto_start: true
    capabilities: [ {{ kind: chat }} ]
"""
    return f"""processes:
  printer:
    command: {json.dumps(PRINTER)}
"""


def server_pid(d):
    try:
        return json.loads((d / ".mew/run/mew.lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def measure(kind, mew, seconds, keys):
    d = Path(tempfile.mkdtemp(prefix=f"mew-sv-{kind}-"))
    (d / ".mew").mkdir()
    (d / ".mew/space.yaml").write_text(space_yaml("space" if kind == "hidden" else kind, mew))
    session = f"sv-{kind}"
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50",
         f"cd {d} && {mew} space up")
    try:
        spid = wait(lambda: server_pid(d), 60, "server")
        # The attached client: the `mew space up` in the tmux pane.
        cpid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        wait(lambda: "tick" in tmux("capture-pane", "-p", "-t", session) or kind != "pane",
             60, "first line")
        for k in keys:
            tmux("send-keys", "-t", session, k)
            time.sleep(0.2)
        if kind == "space":
            wait(lambda: "tick" in tmux("capture-pane", "-p", "-t", session), 60,
                 "envelopes on screen")
        if kind == "hidden":
            # The space view joined (its row says so), but a process is on screen.
            wait(lambda: "here" in tmux("capture-pane", "-p", "-t", session), 60,
                 "the space view joined")
        time.sleep(2)  # settle
        pids = [spid, cpid] + children(cpid)
        before = sum(cpu(p) for p in pids)
        t0 = time.time()
        time.sleep(seconds)
        used = sum(cpu(p) for p in pids) - before
        wall = time.time() - t0
        screen = tmux("capture-pane", "-p", "-t", session)
        return {"cpu_percent": 100.0 * used / wall, "on_screen": "tick" in screen}
    finally:
        subprocess.run([mew, "--space-dir", str(d), "space", "down"], capture_output=True, timeout=60)
        tmux("kill-session", "-t", session, check=False)
        shutil.rmtree(d, ignore_errors=True)


def children(pid):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                s = (p / "stat").read_text()
                if int(s[s.rfind(")") + 2:].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mew", default=str(REPO / "target/release/mew"))
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--space-keys", default="g,Home",
                    help="tmux keys that put the space view on screen (comma-separated)")
    ap.add_argument("--pane-keys", default="",
                    help="tmux keys that put the printer's pane on screen")
    a = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("tmux not installed")
    mew = str(Path(a.mew).resolve())
    space_keys = [k for k in a.space_keys.split(",") if k]
    pane_keys = [k for k in a.pane_keys.split(",") if k]
    rows = {"space": [], "pane": [], "hidden": []}
    try:
        for _ in range(a.reps):
            rows["pane"].append(measure("pane", mew, a.seconds, pane_keys))
            rows["space"].append(measure("space", mew, a.seconds, space_keys))
            rows["hidden"].append(measure("hidden", mew, a.seconds, []))
    finally:
        tmux("kill-server", check=False)
    med = {k: sorted(r["cpu_percent"] for r in v)[len(v) // 2] for k, v in rows.items()}
    ratio = med["space"] / med["pane"] if med["pane"] else float("nan")
    print("| TUI on screen (200x50, 100 a second) | mew CPU, % of a core (median) |")
    print("|---|---|")
    print(f"| a process pane, 100 lines/s | {med['pane']:.1f} |")
    print(f"| the space view, 100 envelopes/s | {med['space']:.1f} |")
    print(f"| a (quiet) process pane while 100 envelopes/s flow | {med['hidden']:.1f} |")
    print(f"\nratio space view / pane: **{ratio:.2f}×**")
    out = HERE / "results" / "space_view.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "median": med, "ratio": ratio,
                               "seconds": a.seconds, "reps": a.reps}, indent=2) + "\n")


if __name__ == "__main__":
    main()
