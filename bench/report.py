#!/usr/bin/env python3
"""Turns bench/results/latest.json into the tables of docs/performance.md and
the chart docs/performance.svg. Run by bench/run.py; also on its own:
python3 bench/report.py [results.json]"""

from __future__ import annotations

import json
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
SVG = ROOT / "docs" / "performance.svg"
BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def med(d, k):
    v = d.get(k) if isinstance(d, dict) else None
    return v["median"] if isinstance(v, dict) and "median" in v else None


def fmt(v, unit="s"):
    if v is None:
        return "—"
    if unit == "s":
        if v < 1:
            return f"{v * 1000:.1f} ms" if v < 0.1 else f"{v * 1000:.0f} ms"
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v * 1000:.2f} ms"
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "cpu":
        return f"{v:.3f} s"
    return f"{v:.3g}"


def cell(d, k, unit="s"):
    v = d.get(k) if isinstance(d, dict) else None
    if not isinstance(v, dict):
        return "—"
    m, lo, hi = v["median"], v["min"], v["max"]
    return f"{fmt(m, unit)} ({fmt(lo, unit)}–{fmt(hi, unit)})"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "—" if r is None else f"{r:.2f}×"


ORDER = ["floor", "script", "shell", "tmux", "mew-notui", "mew-notui-file", "mew-tui", "mew", "mprocs", "pm2",
         "honcho", "nf", "concurrently"]


def rows(w):
    return [(k, w[k]) for k in ORDER if k in w] + [(k, v) for k, v in w.items() if k not in ORDER]


def lines_table(w, title, out, notes):
    base_t = med(w.get("script", {}), "time_s")
    base_c = med(w.get("script", {}), "cpu_s")
    tmux_c = med(w.get("tmux", {}), "cpu_s")
    out.append(f"### {title}\n")
    out.append("| tool | time (median, min–max) | × bare PTY | orchestrator CPU | CPU × script | CPU × tmux |")
    out.append("|---|---|---|---|---|---|")
    for k, d in rows(w):
        if "error" in d:
            out.append(f"| {d.get('label', k)} | not measured | | | | |")
            notes.append(f"{title}, {d.get('label', k)}: {d['error']}")
            continue
        t, c = med(d, "time_s"), med(d, "cpu_s")
        out.append(f"| {d.get('label', k)} | {cell(d, 'time_s')} | {rfmt(ratio(t, base_t))} | "
                   f"{cell(d, 'cpu_s', 'cpu')} | {rfmt(ratio(c, base_c))} | {rfmt(ratio(c, tmux_c))} |")
    out.append("")


def write(res: dict):
    md = markdown(res)
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + BEGIN + "\n" + md + "\n" + END + tail)
    SVG.write_text(svg(res))
    print(f"wrote {DOC} and {SVG}", file=sys.stderr)


def markdown(res: dict) -> str:
    W = res.get("workloads", {})
    p = res.get("params", {})
    m = res.get("machine", {})
    out, notes = [], []
    out.append(f"Run `{res.get('run_id')}` of {res.get('date')}, mode **{res.get('mode')}**, "
               f"{res.get('reps')} repetitions per measurement, {res.get('duration_s')} s in all. "
               f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('mem_gb')} GiB, Linux {m.get('kernel')}.")
    v = m.get("versions", {})
    out.append("Versions: " + ", ".join(f"{k} `{x}`" for k, x in v.items() if x) + ".")
    for mg in res.get("merged", []):
        wl = mg.get("workloads")
        wl = ", ".join(wl) if isinstance(wl, list) else wl
        tools = mg.get("tools", "all")
        who = "every tool again" if tools == "all" else f"only {tools}; the other tools' rows are from before"
        out.append(f"\nRe-measured by run `{mg.get('run_id')}` of {mg.get('date')} (`--merge`, same machine, "
                   f"{who}): {wl}.")
    size = res.get("binary_size")
    if size:
        out.append(f"\nRelease binary (`target/release/mew`, LTO, stripped): **{size / 1e6:.2f} MB** "
                   f"({size} bytes), one file.\n")
    if "throughput" in W:
        lines_table(W["throughput"], f"Throughput: 1 process × {p.get('throughput_lines'):,} lines of 80 bytes",
                    out, notes)
    if "big" in W:
        lines_table(W["big"], f"Throughput, issue 3: 1 process × {p.get('big_lines'):,} lines", out, notes)
    if "fanout" in W:
        lines_table(W["fanout"], f"Fan-out: 20 processes × {p.get('fanout_lines'):,} lines, all at once", out, notes)
    if "idle" in W:
        w = W["idle"]
        out.append(f"### Idle: 20 processes, one short line every 100 ms, {p.get('idle_window_s')} s window\n")
        out.append("| tool | orchestrator CPU (% of one core) | orchestrator RSS (sum of VmRSS) "
                   "| memory mapped, shared pages once |")
        out.append("|---|---|---|---|")
        for k, d in rows(w):
            if "error" in d:
                out.append(f"| {d.get('label', k)} | not measured | | |")
                notes.append(f"Idle, {d.get('label', k)}: {d['error']}")
                continue
            once = cell(d, 'once_mb', 'MB') if 'once_mb' in d else "—"
            out.append(f"| {d.get('label', k)} | {cell(d, 'cpu_pct', '%')} | {cell(d, 'rss_mb', 'MB')} | {once} |")
        out.append("")
        out.append("The RSS column is the targets' measure. With a server and a client (mew's TUI) the "
                   "sum counts every page both map (the binary's code, libc) twice; the last column "
                   "counts each physical page once (`/proc/PID/pagemap`).\n")
    for n in (100, 500):
        w = W.get(f"scale:{n}")
        if not w:
            continue
        su, sd = med(w.get("shell", {}), "up_s"), med(w.get("shell", {}), "down_s")
        out.append(f"### Scale: {n} × `sleep 600`\n")
        out.append("| tool | up: all running | × shell loop | stop: none left | × shell loop | stop command returns "
                   "| orchestrator RSS |")
        out.append("|---|---|---|---|---|---|---|")
        for k, d in rows(w):
            if "error" in d:
                out.append(f"| {d.get('label', k)} | not measured | | | | | |")
                notes.append(f"Scale {n}, {d.get('label', k)}: {d['error']}")
                continue
            out.append(f"| {d.get('label', k)} | {cell(d, 'up_s')} | {rfmt(ratio(med(d, 'up_s'), su))} | "
                       f"{cell(d, 'down_s')} | {rfmt(ratio(med(d, 'down_s'), sd))} | {cell(d, 'stop_cmd_s')} | "
                       f"{cell(d, 'rss_mb', 'MB')} |")
        out.append("")
    if "orphans" in W:
        out.append("### Orphans: `sleep 7101 & (trap \"\" HUP TERM; sleep 7102) & setsid sleep 7103 & exec sleep 7104`\n")
        out.append("| tool | alive 1 s after the normal stop | alive after `kill -9` of the orchestrator + its cleanup |")
        out.append("|---|---|---|")
        for k, d in rows(W["orphans"]):
            if "error" in d:
                out.append(f"| {d.get('label', k)} | not measured | |")
                notes.append(f"Orphans, {d.get('label', k)}: {d['error']}")
                continue
            s = ", ".join(d.get("stop", [])) or "none"
            if d.get("stop_note"):
                s += f" ({d['stop_note']})"
            k9 = ", ".join(d.get("kill9", [])) or "none"
            if d.get("cleanup") == "none":
                k9 += " (no cleanup command)"
            out.append(f"| {d.get('label', k)} | {s} | {k9} |")
        out.append("")
    c = W.get("control", {}).get("mew")
    if c:
        out.append("### Control (issue 4): mew against a shell loop\n")
        out.append("| measurement | mew | baseline | baseline is | ratio |")
        out.append("|---|---|---|---|---|")
        for n in (1, 100):
            out.append(f"| `up -d --wait`, {n} process{'es' if n > 1 else ''} | {cell(c, f'up_wait_{n}_s')} | "
                       f"{cell(c, f'shell_up_{n}_s')} | shell loop until all started | "
                       f"{rfmt(ratio(med(c, f'up_wait_{n}_s'), med(c, f'shell_up_{n}_s')))} |")
        out.append(f"| `status --json`, 100 processes | {cell(c, 'status_100_s')} | {cell(c, 'ps_100_s')} | "
                   f"`ps -p` of the 100 pids | {rfmt(ratio(med(c, 'status_100_s'), med(c, 'ps_100_s')))} |")
        for n in (1, 100):
            out.append(f"| `down`, {n} process{'es' if n > 1 else ''} (command returns) | {cell(c, f'down_{n}_s')} | "
                       f"{cell(c, f'shell_down_{n}_s')} | `kill` + all gone | "
                       f"{rfmt(ratio(med(c, f'down_{n}_s'), med(c, f'shell_down_{n}_s')))} |")
        out.append("")
    a = W.get("attach", {}).get("mew")
    if a:
        out.append("### Attach and keystrokes (mew)\n")
        out.append("| measurement | median (min–max) |")
        out.append("|---|---|")
        if "first_frame_s" in a:
            out.append(f"| `attach` to the first complete frame, 100 processes | {cell(a, 'first_frame_s', 'ms')} |")
        else:
            out.append(f"| `attach` to the first frame | failed: {a.get('first_frame_error')} |")
        if "echo_mew_s" in a:
            out.append(f"| keystroke → echo, bare PTY (raw `cat`) | {cell(a, 'echo_bare_s', 'ms')} |")
            out.append(f"| keystroke → echo, mew focus mode (same program) | {cell(a, 'echo_mew_s', 'ms')} |")
            out.append(f"| difference of the medians | "
                       f"{fmt(med(a, 'echo_mew_s') - med(a, 'echo_bare_s'), 'ms')} |")
        else:
            out.append(f"| keystroke → echo | failed: {a.get('echo_error')} |")
        out.append("")
    out += targets(res)
    if notes:
        out.append("### Not measured\n")
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)


def targets(res):
    """Issue 7's targets, checked against this run."""
    W = res.get("workloads", {})
    rows_ = []

    def add(what, value, ok):
        rows_.append(f"| {what} | {value} | {'met' if ok else 'missed' if ok is False else '—'} |")

    tp = W.get("throughput", {})
    bt = med(tp.get("script", {}), "time_s")
    for k, lim in (("mew-notui", 1.25), ("mew-tui", 1.5)):
        r = ratio(med(tp.get(k, {}), "time_s"), bt)
        add(f"throughput {k} ≤ {lim}× bare PTY", rfmt(r), None if r is None else r <= lim)
    r = ratio(med(tp.get("mew-notui", {}), "cpu_s"), med(tp.get("tmux", {}), "cpu_s"))
    add("throughput: mew CPU (--no-tui) ≤ 0.5× tmux's", rfmt(r), None if r is None else r <= 0.5)
    r = ratio(med(tp.get("mew-tui", {}), "cpu_s"), med(tp.get("tmux", {}), "cpu_s"))
    add("throughput: mew CPU (TUI, server+client) ≤ 0.5× tmux's", rfmt(r), None if r is None else r <= 0.5)
    fo = W.get("fanout", {})
    for k in ("mew-notui", "mew-tui"):
        r = ratio(med(fo.get(k, {}), "time_s"), med(fo.get("script", {}), "time_s"))
        add(f"fan-out {k} ≤ 1.5× bare PTY", rfmt(r), None if r is None else r <= 1.5)
    idle = W.get("idle", {})
    for k in ("mew-tui", "mew-notui", "mew"):
        c, m = med(idle.get(k, {}), "cpu_pct"), med(idle.get(k, {}), "rss_mb")
        if c is not None:
            add(f"idle {k}: ≤ 1 % CPU", fmt(c, "%"), c <= 1.0)
            add(f"idle {k}: ≤ 15 MB RSS", fmt(m, "MB"), m <= 15.0)
    s100, s500 = W.get("scale:100", {}), W.get("scale:500", {})
    r = ratio(med(s100.get("mew", {}), "up_s"), med(s100.get("shell", {}), "up_s"))
    add("100 processes running ≤ 1.5× shell loop", rfmt(r), None if r is None else r <= 1.5)
    v = med(s100.get("mew", {}), "down_s")
    add("100 processes stopped ≤ 30 ms", fmt(v), None if v is None else v <= 0.030)
    v = med(s500.get("mew", {}), "up_s")
    add("500 processes running ≤ 2 s", fmt(v), None if v is None else v <= 2.0)
    r1, r5 = med(s100.get("mew", {}), "rss_mb"), med(s500.get("mew", {}), "rss_mb")
    if r1 is not None and r5 is not None:
        per = (r5 - r1) * 1e6 / 400 / 1024
        add("RSS per idle process ≤ 150 KB (server, (RSS@500 − RSS@100)/400)", f"{per:.0f} KB", per <= 150)
    o = W.get("orphans", {}).get("mew")
    if o and "error" not in o:
        add("orphans: none survive a normal stop", ", ".join(o.get("stop", [])) or "none", not o.get("stop"))
        add("orphans: none survive kill -9 + `mew space down`", ", ".join(o.get("kill9", [])) or "none",
            not o.get("kill9"))
    a = W.get("attach", {}).get("mew", {})
    v = med(a, "first_frame_s")
    add("attach to first frame ≤ 50 ms (100 processes)", fmt(v, "ms"), None if v is None else v <= 0.050)
    if med(a, "echo_mew_s") is not None:
        dlt = med(a, "echo_mew_s") - med(a, "echo_bare_s")
        add("keystroke → echo within 2 ms of a bare PTY", fmt(dlt, "ms"), dlt <= 0.002)
    size = res.get("binary_size")
    add("release build: LTO, one binary", f"{size / 1e6:.2f} MB" if size else "—", True if size else None)
    return ["### Issue 7 targets, this run\n", "| target | measured | |", "|---|---|---|", *rows_, ""]


# ---------------------------------------------------------------- SVG


COLORS = {"floor": "#9e9e9e", "script": "#616161", "shell": "#616161", "tmux": "#1e88e5", "mew-notui": "#e53935",
          "mew-notui-file": "#ef9a9a", "mew-tui": "#b71c1c", "mew": "#e53935", "mprocs": "#8e24aa",
          "pm2": "#43a047", "honcho": "#fb8c00", "nf": "#6d4c41", "concurrently": "#00897b"}


def svg(res: dict) -> str:
    W = res.get("workloads", {})
    panels = []

    def panel(title, wl, key, base=None, unit=""):
        w = W.get(wl, {})
        b = med(w.get(base, {}), key) if base else None
        bars = []
        for k, d in rows(w):
            v = med(d, key)
            if v is None:
                continue
            if base:
                if not b:
                    return
                v = v / b
            bars.append((d.get("label", k), k, v))
        if bars:
            panels.append((title, bars, unit))

    panel("Throughput: time × bare PTY", "throughput", "time_s", "script", "×")
    panel("Throughput: orchestrator CPU × script", "throughput", "cpu_s", "script", "×")
    panel("Fan-out 20×: time × bare PTY", "fanout", "time_s", "script", "×")
    panel("Fan-out 20×: orchestrator CPU s", "fanout", "cpu_s", None, " s")
    panel("Idle: CPU % of one core", "idle", "cpu_pct", None, " %")
    panel("Idle: RSS MB", "idle", "rss_mb", None, " MB")
    panel("100 up: time × shell loop", "scale:100", "up_s", "shell", "×")
    panel("100 down: seconds until none left", "scale:100", "down_s", None, " s")
    panel("500 up: time × shell loop", "scale:500", "up_s", "shell", "×")
    panel("500 down: seconds until none left", "scale:500", "down_s", None, " s")

    width, label_w, bar_w, row_h = 760, 260, 400, 18
    y = 40
    body = []
    for title, bars, unit in panels:
        body.append(f'<text x="10" y="{y}" class="t">{escape(title)}</text>')
        y += 8
        top = max(v for _, _, v in bars) or 1
        for label, k, v in bars:
            w_ = max(1.0, bar_w * v / top)
            body.append(f'<text x="{label_w - 6}" y="{y + 13}" class="l">{escape(label)}</text>')
            body.append(f'<rect x="{label_w}" y="{y + 2}" width="{w_:.1f}" height="{row_h - 4}" '
                        f'fill="{COLORS.get(k, "#757575")}"/>')
            val = f"{v:.2f}{unit}" if v < 100 else f"{v:.0f}{unit}"
            body.append(f'<text x="{label_w + w_ + 4:.1f}" y="{y + 13}" class="v">{val}</text>')
            y += row_h
        y += 22
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}" '
            f'font-family="sans-serif" font-size="12">\n'
            '<style>.t{font-weight:bold;font-size:13px}.l{text-anchor:end}.v{fill:#333}</style>\n'
            f'<rect width="{width}" height="{y}" fill="white"/>\n'
            f'<text x="10" y="20" class="t">mew benchmarks, run {escape(str(res.get("run_id")))} '
            f'({escape(str(res.get("mode")))}, {escape(str(res.get("date")))}); lower is better</text>\n')
    return head + "\n".join(body) + "\n</svg>\n"


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "latest.json"
    write(json.loads(path.read_text()))
