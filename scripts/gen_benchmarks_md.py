"""Generate docs/benchmarks.md (and docs/benchmarks.svg) from benchmarks/results/latest.json.

    python scripts/gen_benchmarks_md.py [RESULTS.json] [--no-plot]

Never edit docs/benchmarks.md by hand: re-run the suite (``make bench``)
and this script. The plot needs matplotlib (``pip install -e '.[plot]'``);
without it the page is still written and says the plot was not regenerated.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from hivemem._sizes import format_size  # noqa: E402

DEFAULT = os.path.join(ROOT, "benchmarks", "results", "latest.json")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
PLOT = os.path.join(ROOT, "docs", "benchmarks.svg")
ORDER = ("nothing", "gc", "recipe", "optimize", "governor")
LABEL = {
    "nothing": "nothing",
    "gc": "`gc.collect()`",
    "recipe": "report's recipe",
    "optimize": "`hivemem.optimize()`",
    "governor": "governor throughout",
}


def mib(n: object) -> str:
    return format_size(n) if isinstance(n, (int, float)) else "-"  # type: ignore[arg-type]


def ratio(x: object) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


def secs(x: object) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


def machine_line(m: dict[str, object]) -> str:
    ram = m.get("ram_bytes")
    return (
        f"{m.get('date')}, {m.get('implementation', 'CPython')} {m.get('python')}, {m.get('platform')}, "
        f"{m.get('cpu') or 'cpu n/a'} ({m.get('cpus')} cores), {mib(ram)} RAM"
        + (f", {m['libc']}" if m.get("libc") else "")
    )


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def stamp(*sections: object, top: dict[str, object]) -> str:
    """The italic line under a table: machine, Python and date of the figures in it."""
    seen: list[str] = []
    for sec in sections:
        m = sec.get("measured") if isinstance(sec, dict) else None
        m = m if isinstance(m, dict) else top
        text = (
            f"{m.get('date')}, {m.get('implementation', 'CPython')} {m.get('python')}, "
            f"{m.get('platform')}, {m.get('cpus')} cores"
        )
        if text not in seen:
            seen.append(text)
    return "_Measured " + "; ".join(seen or [str(top.get("date"))]) + "._"


def _measured_note(section: dict[str, object], top: dict[str, object]) -> str:
    m = section.get("measured")
    if isinstance(m, dict) and (m.get("date"), m.get("python")) != (top.get("date"), top.get("python")):
        return f" (measured {m.get('date')}, Python {m.get('python')})"
    return ""


def scenario_section(data: dict[str, object], lines: list[str]) -> None:
    top = data.get("machine") or {}
    assert isinstance(top, dict)
    scenarios = [s for s in data.get("scenarios") or [] if isinstance(s, dict)]  # type: ignore[attr-defined]
    lines += [
        "## Scenarios: reclaim side by side",
        "",
        "`reclaim = (before - after) / (before - floor)`: 1.0 means RSS came down to the floor, the RSS "
        "of a fresh process that builds only the surviving data. *before* is RSS once the program "
        "has built its state; *after* is RSS after the baseline. Each baseline runs in its own fresh "
        "interpreter. The gap columns are how many MiB lower RSS ends with `hivemem.optimize()` "
        "than with `gc.collect()` and than with the 10-1-1 recipe often recommended "
        "(`gc.set_threshold(10, 1, 1)`, 50 full collections, `re.purge()`, `linecache.clearcache()`).",
        "",
    ]
    rows = []
    for s in scenarios:
        b = s.get("baselines") or {}
        assert isinstance(b, dict)
        opt, gc_, rec, gov = (b.get(k) or {} for k in ("optimize", "gc", "recipe", "governor"))
        gap_gc = (gc_.get("after") - opt.get("after")) if gc_.get("after") and opt.get("after") else None
        gap_rec = (rec.get("after") - opt.get("after")) if rec.get("after") and opt.get("after") else None
        answers = all(
            r.get("checksum_ok", True) for r in b.values() if isinstance(r, dict) and "unavailable" not in r
        )
        reached = opt.get("reclaim")
        if not s.get("targeted"):
            verdict = "not targeted"
        elif isinstance(reached, (int, float)) and reached >= 0.9:
            verdict = "yes"
        else:
            verdict = "**no**" + (f": {s['why']}" if s.get("why") else "")
        rows.append(
            [
                f"`{s.get('scenario')}`{_measured_note(s, top)}",
                mib(s.get("floor")),
                mib(opt.get("before")),
                mib(opt.get("after")),
                ratio(gc_.get("reclaim")),
                ratio(rec.get("reclaim")),
                ratio(reached),
                ratio(gov.get("reclaim")) if "unavailable" not in gov else "n/a",
                mib(gap_gc),
                mib(gap_rec),
                secs(opt.get("seconds")),
                "identical" if answers else "**CHANGED**",
                verdict,
            ]
        )
    lines += table(
        [
            "scenario",
            "floor",
            "before",
            "after optimize()",
            "reclaim gc",
            "reclaim recipe",
            "reclaim optimize()",
            "reclaim governor",
            "gap to gc",
            "gap to recipe",
            "optimize() s",
            "answers",
            "reclaim >= 0.9",
        ],
        rows,
    )
    lines += ["", stamp(*scenarios, top=top)]
    lines += ["", "What each scenario builds:", ""]
    for s in scenarios:
        lines.append(f"- `{s.get('scenario')}`: {s.get('description')}")
        if s.get("why"):
            lines.append(f"  Why hivemem does not reach 0.9 here: {s['why']}")
    lines += [
        "",
        "The governor baseline starts `hivemem.govern(budget)` before the build (budget: the scenario's "
        "target, or 1.5 x its floor) and reads RSS once it is under the budget or 5 s after the build. "
        "It acts during the build at each pressure level, within its CPU budget (5% of wall time by "
        "default), so its result depends on when that budget allows an aggressive pass: where the "
        "program bloats faster than the budget allows, the governor stays at CRITICAL and says so in "
        "its events instead of spinning. Its reclaim is measured from the unmanaged run's RSS.",
    ]
    lines += ["", "### Every baseline", ""]
    lines.append(
        "CPU is the child's process time spent in the baseline (for the governor: its extra CPU over the "
        "same build without it, build included). *peak* is the kernel's high-water mark (`VmHWM`)."
    )
    lines.append("")
    rows = []
    for s in scenarios:
        for mode in ORDER:
            r = (s.get("baselines") or {}).get(mode)  # type: ignore[union-attr]
            if not isinstance(r, dict):
                continue
            if "unavailable" in r:
                rows.append(
                    [f"`{s['scenario']}`", LABEL[mode], "-", "-", "-", "-", "-", "-", r["unavailable"]]
                )
                continue
            runs = f" (fastest of {r['runs']})" if r.get("runs") else ""
            if r.get("chosen") == "median after":
                afters = ", ".join(mib(a) for a in r.get("after_all") or [])
                runs = f" (median of {r.get('runs')} runs by RSS after: {afters})"
            rows.append(
                [
                    f"`{s['scenario']}`",
                    LABEL[mode],
                    mib(r.get("before")),
                    mib(r.get("after")),
                    ratio(r.get("reclaim")),
                    secs(r.get("seconds")) + runs,
                    secs(r.get("cpu_seconds")),
                    mib(r.get("peak")),
                    "identical" if r.get("checksum_ok") else "**CHANGED**",
                ]
            )
    lines += table(
        ["scenario", "baseline", "before", "after", "reclaim", "wall s", "CPU s", "peak", "answers"], rows
    )
    lines.append("")
    comp = next((s for s in scenarios if s.get("scenario") == "composite"), None)
    if comp:
        opt = comp["baselines"].get("optimize") or {}  # type: ignore[index]
        if opt.get("report_text"):
            lines += [
                "### The composite app's optimize() report",
                "",
                "```text",
                opt["report_text"],
                "```",
                "",
            ]


def overhead_section(data: dict[str, object], lines: list[str]) -> None:
    top = data.get("machine") or {}
    assert isinstance(top, dict)
    imp = data.get("import")
    lat = data.get("latency")
    gov = data.get("governor_cpu")
    per = data.get("optimize_per_gb")
    slow = data.get("recipe_slowdown")
    if not any((imp, lat, gov, per, slow)):
        return
    lines += ["## What hivemem costs", ""]
    if isinstance(imp, dict):
        lines.append(f"Import cost, median of fresh interpreters over a bare one{_measured_note(imp, top)}:")
        lines.append("")
        rows = [
            [k, mib(v.get("rss_bytes_over_bare")), f"{v.get('seconds_over_bare', 0) * 1000:.1f} ms"]
            for k, v in imp.items()
            if isinstance(v, dict) and "rss_bytes_over_bare" in v
        ]
        lines += table(["case", "RSS", "time"], rows)
        lines += ["", stamp(imp, top=top), ""]
    rows = []
    if isinstance(lat, dict):
        for k in ("rss() seconds per call", "usage() seconds per call"):
            if k in lat:
                rows.append([f"`{k.split()[0]}` latency", f"{lat[k] * 1e6:.1f} µs per call (best of 5)"])
    if isinstance(gov, dict):
        if "unavailable" in gov:
            rows.append(["governor CPU", str(gov["unavailable"])])
        else:
            rows.append(
                [
                    f"governor CPU at its default interval ({gov.get('interval')} s)",
                    f"{gov['share_of_one_core'] * 100:.3f}% of one core ({gov['extra_cpu_seconds']:.3f} s "
                    f"extra CPU over {gov['seconds']:.0f} s against an idle twin)",
                ]
            )
    if isinstance(per, dict) and "seconds_per_gib" in per:
        pts = ", ".join(f"{mib(p['rss'])}: {p['seconds']:.2f} s" for p in per.get("points", []))
        rows.append(
            [
                f"`optimize()` wall time per GiB of live heap ({per.get('aggressiveness')})",
                f"{per['seconds_per_gib']:.2f} s/GiB ({pts})",
            ]
        )
    if isinstance(slow, dict):
        for name, w in (slow.get("workloads") or {}).items():  # type: ignore[attr-defined]
            d, r = w["default"], w["10-1-1"]
            rows.append(
                [
                    f"`gc.set_threshold(10, 1, 1)` (the 10-1-1 recipe), {name} workload",
                    f"**{w['slowdown']:.2f}x** the CPU time of CPython's defaults "
                    f"({r['cpu_seconds']:.2f} s vs {d['cpu_seconds']:.2f} s; collections per generation "
                    f"{r['collections']} vs {d['collections']}; best of {slow.get('repeat')}; "
                    f"workload: {w.get('workload')})",
                ]
            )
    if rows:
        lines += table(["figure", "measured"], rows)
        lines += ["", stamp(*(x for x in (lat, gov, per, slow) if isinstance(x, dict)), top=top), ""]


def plugin_section(data: dict[str, object], lines: list[str]) -> None:
    plug = data.get("pytest_plugin")
    if not isinstance(plug, dict):
        return
    top = data.get("machine") or {}
    assert isinstance(top, dict)
    lines += [f"## pytest plugin overhead, against pytest-memray{_measured_note(plug, top)}", ""]
    if "unavailable" in plug:
        lines += [str(plug["unavailable"]), ""]
        return
    over = plug.get("overhead")
    if isinstance(over, dict):
        lines.append(
            f"Suite: {plug.get('suite')}; {plug.get('statistic')}, {plug.get('rounds')} rounds. "
            f"Reproduce: `{plug.get('command')}`."
        )
        lines.append("")
        rows = []
        for name, r in over.items():
            if not isinstance(r, dict):
                continue
            if "unavailable" in r:
                rows.append([name, "-", "-", str(r["unavailable"])])
                continue
            rows.append(
                [
                    name,
                    f"{r.get('session_seconds_min', 0):.3f} s / {r.get('session_seconds_median', 0):.3f} s",
                    f"{r.get('session_overhead_pct_min', 0):.1f}% / "
                    f"{r.get('session_overhead_pct_median', 0):.1f}%",
                    str(r.get("description", "")),
                ]
            )
        lines += table(["configuration", "session min / median", "overhead min / median", "note"], rows)
        lines += ["", stamp(plug, top=top)]
        acc = plug.get("accuracy")
        if isinstance(acc, dict) and "worst_abs_error_mib" in acc:
            lines += ["", f"Peak accuracy (rss mode): worst error {acc['worst_abs_error_mib']:.3f} MiB."]
    else:
        lines += ["```text", json.dumps({k: v for k, v in plug.items() if k != "measured"}, indent=1), "```"]
    lines.append("")


def plot(data: dict[str, object], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = [s for s in data.get("scenarios") or [] if isinstance(s, dict)]  # type: ignore[attr-defined]
    if not scenarios:
        return False
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(8, 1.6 * len(scenarios) + 0.8), squeeze=False)
    matplotlib.rcParams["svg.hashsalt"] = "hivemem"  # stable ids: the SVG only changes with the data
    for ax, s in zip(axes[:, 0], scenarios, strict=True):
        b = s.get("baselines") or {}
        modes = [m for m in ORDER if isinstance(b.get(m), dict) and "unavailable" not in b[m]]
        # the governor's "before" is what the program reached unmanaged (it works during the build)
        before = [b[m].get("before_unmanaged", b[m]["before"]) / 2**20 for m in modes]
        after = [b[m]["after"] / 2**20 for m in modes]
        y = range(len(modes))
        ax.barh(y, before, color="#d9d9d9", label="before")
        ax.barh(y, after, color="#3b75af", label="after")
        ax.axvline(s["floor"] / 2**20, color="#c0392b", linestyle="--", label="floor")
        ax.set_yticks(list(y), [LABEL[m].strip("`") for m in modes], fontsize=7)
        ax.set_title(str(s.get("scenario")), fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.invert_yaxis()
    axes[-1, 0].set_xlabel("RSS (MiB)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    m = data.get("machine") or {}
    fig.suptitle(
        f"hivemem benchmarks: RSS before / after / floor ({m.get('date')}, Python {m.get('python')})",
        fontsize=9,
    )  # type: ignore[union-attr]
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    return True


def generate(data: dict[str, object], *, plotter: object = plot) -> str:
    """The page's text. *plotter(data, path) -> bool* draws the SVG (tests pass a stub)."""
    top = data.get("machine") or {}
    assert isinstance(top, dict)
    lines = [
        "# benchmarks",
        "",
        "<!-- generated by scripts/gen_benchmarks_md.py from benchmarks/results/latest.json: do not edit -->",
        "",
        f"Measured on: {machine_line(top)}.",
        "",
        "Every figure is RSS read from `/proc` in a fresh interpreter per scenario and baseline, never an "
        "estimate. The machine is shared with other work while these run, so timings are noisy: with "
        "`--bench-repeat N` the fastest of N runs is kept and the table says so. Reproduce with:",
        "",
        "```console",
        "make bench                       # pytest benchmarks/, then this page",
        "hivemem bench --repeat 3         # the same, fastest of 3 runs per baseline",
        "hivemem bench composite          # one scenario",
        "python scripts/gen_benchmarks_md.py   # regenerate this page and the plot from the JSON",
        "```",
        "",
    ]
    comp = next((s for s in data.get("scenarios") or [] if s.get("scenario") == "composite"), None)  # type: ignore[attr-defined]
    if comp:
        opt = comp["baselines"].get("optimize") or {}
        ok = (
            opt.get("after", 1 << 62) < 100 * 2**20 and opt.get("checksum_ok") and opt.get("seconds", 99) <= 2
        )
        lines += [
            "## Headline: the composite 'hive mind' app",
            "",
            f"`hivemem.optimize(target_mb={comp.get('target_mb')})` took the composite app from "
            f"**{mib(opt.get('before'))} to {mib(opt.get('after'))}** in **{secs(opt.get('seconds'))} s** "
            f"of wall time ({secs(opt.get('cpu_seconds'))} s of CPU"
            + (f"; fastest of {opt['runs']} runs" if opt.get("runs") else "")
            + f"; floor {mib(comp.get('floor'))}), with the results checksum "
            f"{'identical' if opt.get('checksum_ok') else 'CHANGED'}. "
            + (
                "The goal (< 100 MB, <= 2 s, same answers) is met."
                if ok
                else "The goal (< 100 MB, <= 2 s, same answers) is **not** met."
            )
            + " `hivemem demo` runs the same app in one process.",
            "",
        ]
    scenario_section(data, lines)
    if plotter is not None and plotter(data, PLOT):  # type: ignore[operator]
        lines += ["![RSS before, after and floor per scenario and baseline](benchmarks.svg)", ""]
    elif os.path.exists(PLOT):
        lines += [
            "![RSS before, after and floor per scenario and baseline](benchmarks.svg)",
            "",
            "(The plot was not regenerated with this table: matplotlib is not installed.)",
            "",
        ]
    overhead_section(data, lines)
    plugin_section(data, lines)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    source = args[0] if args else DEFAULT
    with open(source) as f:
        data = json.load(f)
    text = generate(data, plotter=None if "--no-plot" in argv else plot)
    with open(DOC, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(DOC, ROOT)} from {os.path.relpath(source, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
