#!/usr/bin/env python3
"""Turns the samples the bench scripts recorded (bench/lib.sh describes the
format) into bench/report.md and bench/report.svg, and prints the report.

    report.py SAMPLES.tsv REPORT.md REPORT.svg [EXTRA.txt...]
    report.py --print SAMPLES.tsv        (a figure script run by hand)

Every figure is a distribution over the samples of one run: min, median,
p95 (nearest rank) and max. Ratios divide two medians of the same run.
"""
import html
import math
import os
import statistics
import sys

FIGURES = [
    ("start", "1. Start latency: `hull run --rm IMAGE true`"),
    ("vmm", "2. VMM overhead with a stand-in guest"),
    ("density", "3. Density: idle busybox sandboxes"),
    ("memory", "Guest memory of idle busybox sandboxes (hull)"),
    ("rate", "4. Creation rate, 2 in flight"),
    ("pull", "5. Image pull and conversion"),
]
# What the plot shows of each figure: rows of (figure, metric), and the
# phase breakdown as one stacked bar.
PLOTS = [
    ("start", "wall ms", "1. start latency, ms"),
    ("vmm", "launch to first guest byte ms", "2. VMM launch to first guest byte, ms"),
    ("density", "host memory per sandbox MiB", "3. host memory per idle sandbox, MiB (PSS)"),
    ("rate", "sandboxes/s", "4. sandboxes started per second, 2 in flight"),
    ("pull", "wall ms", "5. image pull (and conversion), ms"),
]
PHASES = ("start", "hull phase")
# Rows whose metric starts with this are parts of the row above them (the
# density figure's split of host memory per sandbox): the plot stacks them.
PART = "… "

# Figure 6 (bench/disk/run.sh): the rootfs disk, EROFS against ext4.
FIGURES.append(("disk", "6. Rootfs disk: EROFS vs ext4 (build, size, cold guest read)"))
PLOTS.append(("disk", "guest tar of / ms (cold)", "6. guest reads every file of a Debian image, cold, ms"))

# Figure 7 (bench/pod/run.sh): a container in a VM of its own vs joining one.
FIGURES.append(("pod", "7. Pods: a VM of its own vs joining a running VM"))
PLOTS.append(("pod", "ms", "7. hull run --rm true: own VM vs joining one, ms"))


class Run:
    def __init__(self):
        self.samples = {}  # figure -> {(series, metric): [values]}, in order
        self.ratios = {}
        self.notes = {}
        self.meta = []

    def load(self, path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                kind, rest = parts[0], parts[1:]
                if kind == "sample" and len(rest) == 4:
                    fig, series, metric, value = rest
                    try:
                        v = float(value)
                    except ValueError:
                        continue
                    self.samples.setdefault(fig, {}).setdefault((series, metric), []).append(v)
                elif kind == "ratio" and len(rest) == 4:
                    self.ratios.setdefault(rest[0], []).append(rest[1:])
                elif kind == "note" and len(rest) == 2:
                    self.notes.setdefault(rest[0], []).append(rest[1])
                elif kind == "meta" and len(rest) == 2:
                    self.meta.append(tuple(rest))
        return self

    def median(self, fig, key):
        series, _, metric = key.partition("|")
        values = self.samples.get(fig, {}).get((series, metric))
        return statistics.median(values) if values else None


def stats(values):
    s = sorted(values)
    p95 = s[max(0, math.ceil(0.95 * len(s)) - 1)]
    return s[0], statistics.median(s), p95, s[-1]


def num(x):
    if x is None:
        return "-"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def markdown(run, extras):
    out = ["# hull benchmark report", "",
           "Each row is the distribution over the samples of this one run: min, median, "
           "p95 (nearest rank) and max; ratios divide two medians of this run.", ""]
    if run.meta:
        out += ["## Host", "", "| | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in run.meta]
        out.append("")
    known = [f for f, _ in FIGURES]
    figures = FIGURES + [(f, f) for f in list(run.samples) + list(run.notes) if f not in known]
    seen = set()
    for fig, title in figures:
        if fig in seen or (fig not in run.samples and fig not in run.notes):
            continue
        seen.add(fig)
        out += [f"## {title}", ""]
        rows = run.samples.get(fig, {})
        if rows:
            out += ["| series | metric | n | min | median | p95 | max |", "|---|---|--:|--:|--:|--:|--:|"]
            for (series, metric), values in rows.items():
                lo, med, p95, hi = stats(values)
                out.append(f"| {series} | {metric} | {len(values)} | {num(lo)} | {num(med)} | {num(p95)} | {num(hi)} |")
            out.append("")
        for label, a, b in run.ratios.get(fig, []):
            ma, mb = run.median(fig, a), run.median(fig, b)
            value = f"**{ma / mb:.2f}×**" if ma is not None and mb else "n/a"
            out.append(f"- ratio {label}: {value} (median {num(ma)} / {num(mb)}, {b.partition('|')[2]})")
        out += [f"- {n}" for n in run.notes.get(fig, [])]
        out.append("")
    for path in extras:
        if os.path.exists(path) and os.path.getsize(path):
            with open(path) as f:
                out += [f"## {os.path.basename(path)}", "", "```", f.read().rstrip(), "```", ""]
    return "\n".join(out)


def svg(run):
    width, left, right, row_h, bar_h = 900, 330, 90, 22, 12
    plot_w = width - left - right
    parts, y = [], 30

    def text(x, y, s, anchor="start", size=12, weight="normal"):
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
                     f'font-weight="{weight}">{html.escape(s)}</text>')

    text(10, 20, "hull benchmark: median bar, min-max whisker, p95 dot", size=14, weight="bold")
    meta = dict(run.meta)
    host = "; ".join(meta[k] for k in ("CPU", "hypervisor used by hull", "mode", "started") if k in meta)
    if host:
        y += 8
        text(10, y, host[:160], size=10)
    for fig, metric, title in PLOTS:
        rows = [(s, v) for (s, m), v in run.samples.get(fig, {}).items() if m == metric]
        if not rows:
            continue
        y += 18
        text(10, y, title, weight="bold")
        y += 8
        top = max(max(v) for _, v in rows) or 1
        scale = plot_w / top
        for series, values in rows:
            lo, med, p95, hi = stats(values)
            cy = y + row_h / 2
            text(left - 8, cy + 4, series, anchor="end")
            parts.append(f'<rect x="{left}" y="{cy - bar_h / 2:.1f}" width="{med * scale:.1f}" height="{bar_h}" '
                         f'fill="{"#3b6ea8" if series.startswith("hull") else "#a0a0a0"}"/>')
            parts.append(f'<line x1="{left + lo * scale:.1f}" y1="{cy:.1f}" x2="{left + hi * scale:.1f}" '
                         f'y2="{cy:.1f}" stroke="black"/>')
            for x in (lo, hi):
                parts.append(f'<line x1="{left + x * scale:.1f}" y1="{cy - 4:.1f}" x2="{left + x * scale:.1f}" '
                             f'y2="{cy + 4:.1f}" stroke="black"/>')
            parts.append(f'<circle cx="{left + p95 * scale:.1f}" cy="{cy:.1f}" r="2.5" fill="#c0392b"/>')
            text(left + hi * scale + 6, cy + 4, num(med))
            y += row_h
        if fig == PHASES[0]:
            y = phase_bar(run, parts, text, y, left, plot_w, scale, row_h, bar_h)
        for series, _ in rows:
            split = [(m[len(PART):].removesuffix(" MiB"), statistics.median(v))
                     for (s, m), v in run.samples.get(fig, {}).items() if s == series and m.startswith(PART)]
            if split:
                y = stacked_bar(parts, text, y, left, scale, row_h, bar_h, f"{series}, split (medians)", split, "MiB")
    y += 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(parts) + "\n</svg>\n")


def phase_bar(run, parts, text, y, left, plot_w, scale, row_h, bar_h):
    """One stacked bar per series of phases (template clone, cold boot)."""
    samples = run.samples.get(PHASES[0], {})
    series = list(dict.fromkeys(s for s, _ in samples if s.startswith(PHASES[1])))
    for name in series:
        phases = [(m[:-3], statistics.median(v)) for (s, m), v in samples.items() if s == name]
        label = name.replace(PHASES[1], "hull run phases") + " (medians)"
        y = stacked_bar(parts, text, y, left, scale, row_h, bar_h, label, phases, "ms")
    return y


def stacked_bar(parts, text, y, left, scale, row_h, bar_h, label, pieces, unit):
    """One bar of (name, value) pieces end to end, with a legend below."""
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4"]
    cy = y + row_h / 2
    text(left - 8, cy + 4, label, anchor="end")
    x = left
    for i, (name, value) in enumerate(pieces):
        w = value * scale
        parts.append(f'<rect x="{x:.1f}" y="{cy - bar_h / 2:.1f}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="{colors[i % len(colors)]}"><title>{html.escape(name)}: {num(value)} {unit}</title></rect>')
        x += w
    y += row_h
    for i, (name, value) in enumerate(pieces):
        col, line = i % 2, i // 2
        lx, ly = 30 + col * 430, y + line * 16 + 10
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colors[i % len(colors)]}"/>')
        text(lx + 14, ly, f"{name}: {num(value)} {unit}", size=11)
    return y + ((len(pieces) + 1) // 2) * 16 + 6


def main(argv):
    if argv[1:2] == ["--print"]:
        print(markdown(Run().load(argv[2]), []))
        return 0
    samples, md_path, svg_path, *extras = argv[1:]
    run = Run().load(samples)
    md = markdown(run, extras)
    md += f"\nPlot: `{os.path.basename(svg_path)}`\n"
    with open(md_path, "w") as f:
        f.write(md)
    with open(svg_path, "w") as f:
        f.write(svg(run))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
