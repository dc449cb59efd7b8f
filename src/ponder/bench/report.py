"""`ponder report`: a markdown report, CSV tables and PNG plots from a store.

- scaling curves: accuracy against tokens, FLOPs, dollars and seconds per problem, one line per
  method with its 95% band, log x;
- accuracy at equal compute: each method's best point within a token budget;
- per-difficulty bars (MATH levels, else buckets of the model's own pass rate);
- verifier quality (AUROC, false-positive rate at the selection point) of scored pools.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich import box
from rich.table import Table

from ponder.bench.analysis import (
    COSTS,
    Group,
    Point,
    VerifierQuality,
    difficulty,
    load_groups,
    points,
    verifier_quality,
)
from ponder.bench.confidence import (
    ORDERS,
    Replayed,
    SignalQuality,
    load_signals,
    paired,
    replay_points,
    selection_points,
    signal_quality,
)
from ponder.bench.estimators import bootstrap_mean_ci
from ponder.bench.store import Store
from ponder.extras import require_extra
from ponder.lm import Price

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

AXES = {
    "tokens": "tokens per problem (prompt not cached + generated; policy + verifier)",
    "flops": "FLOPs per problem (≈ 2 × parameters × tokens computed)",
    "dollars": "dollars per problem",
    "seconds": "wall seconds per problem (share of the run's wall time)",
}


def method_name(p: Point, pools: int = 1) -> str:
    """A curve's legend: the method (pass@k marked as the oracle it is), with its pool when
    the pool is not the only one for its task and model."""
    name = "pass@k (oracle)" if p.method == "pass@k" else p.method
    return f"{name} · {p.group}" if pools > 1 and p.group.startswith("pool") else name


def _pools(pts: Iterable[Point]) -> dict[tuple[str, str], int]:
    seen: dict[tuple[str, str], set[str]] = {}
    for p in pts:
        if p.group.startswith("pool"):
            seen.setdefault((p.task, p.model), set()).add(p.group)
    return {k: len(v) for k, v in seen.items()}


def _fmt_acc(p: Point) -> str:
    return f"{100 * p.accuracy:.1f}% [{100 * p.low:.1f}, {100 * p.high:.1f}]"


def _fmt_cost(name: str, x: float) -> str:
    if name == "tokens":
        return f"{x:,.0f}"
    if name == "flops":
        return f"{x:.3g}"
    if name == "dollars":
        return f"{x:.5f}"
    return f"{x:.2f}"


@dataclass
class Summary:
    """One screen: each method at k=1 and at its largest k. Printed by rich as its table;
    `rows` are the same numbers as plain data (`--json`)."""

    table: Table
    rows: list[dict[str, object]]

    def __rich__(self) -> Table:
        return self.table


def summary_table(store: Store, rids: Sequence[int]) -> Summary:
    """The summary of the given runs (the same intervals as the report's: same resamples,
    same seed, so the same data always prints the same table)."""
    wanted = set(rids)
    groups = [g for g in load_groups(store) if wanted & {r.rid for r in g.runs}]
    return summary_of(groups, {id(g): points(g) for g in groups})


def summary_of(groups: Sequence[Group], by_group: dict[int, list[Point]]) -> Summary:
    """The summary from points already computed (keyed by id() of their group)."""
    models = sorted({g.model for g in groups})
    tasks = sorted({g.task for g in groups})
    t = Table(title=f"{', '.join(tasks)} · {', '.join(models)}", box=box.SIMPLE)
    cols = ["task"] if len(tasks) > 1 else []
    cols += ["method", "k", "problems", "accuracy [95% CI]", "tokens/pr.", "s/pr."]
    for col in cols:
        t.add_column(col, justify="left" if col in ("task", "method") else "right", no_wrap=True)
    pools = sorted({g.label for g in groups if g.kind == "pool"})
    rows: list[dict[str, object]] = []
    for g in groups:
        pts = by_group[id(g)]
        largest = max(p.k for p in pts)
        for p in pts:
            if p.k not in (1, largest):
                continue
            rows.append(
                {
                    "task": g.task,
                    "model": g.model,
                    "method": p.method,
                    "group": g.label,
                    "k": p.k,
                    "problems": p.problems,
                    "accuracy": round(p.accuracy, 6),
                    "ci_low": round(p.low, 6),
                    "ci_high": round(p.high, 6),
                    "tokens_per_problem": round(p.tokens, 2),
                    "seconds_per_problem": round(p.seconds, 3),
                }
            )
            tag = f" [{pools.index(g.label) + 1}]" if len(pools) > 1 and g.kind == "pool" else ""
            t.add_row(
                *([g.task] if len(tasks) > 1 else []),
                p.method + tag,
                str(p.k),
                str(p.problems),
                _fmt_acc(p),
                f"{p.tokens:,.0f}",
                f"{p.seconds:.1f}",
            )
    if pools:
        t.caption = "pooled methods are estimated from " + "; ".join(
            f"[{i + 1}] {label}" if len(pools) > 1 else label for i, label in enumerate(pools)
        )
    return Summary(t, rows)


@dataclass
class ReportData:
    """Everything the report says, computed once for the markdown, CSV, PNG and HTML forms."""

    groups: list[Group]
    by_group: dict[int, list[Point]]  # keyed by id() of the group
    points: list[Point]  # every point drawn: the groups', the confidence rules'
    confidence: list[Confidence]
    quality: list[VerifierQuality]
    by_difficulty: list[dict[str, object]]
    # (task, model) -> curve name -> its short legend label
    labels: dict[tuple[str, str], dict[str, str]]

    def label(self, p: Point, pools: dict[tuple[str, str], int]) -> str:
        """The short label of the curve `p` is on (`pools`: `_pools` of the points)."""
        name = method_name(p, pools.get((p.task, p.model), 0))
        return self.labels.get((p.task, p.model), {}).get(name, name)


def gather(store: Store, price: Price | None = None) -> ReportData:
    """Load the store's groups and compute every point, interval and table of the report."""
    groups = load_groups(store, price)
    by_group = {id(g): points(g) for g in groups}
    all_points = [p for g in groups for p in by_group[id(g)]]
    confidence: list[Confidence] = []
    for g in groups:
        if g.kind == "pool" and not g.scored and not g.config.get("workload"):
            found = confidence_of(store, g, by_group[id(g)])
            if found is not None:
                confidence.append(found)
    for c in confidence:
        all_points += c.selection + [r.point for r in c.replayed]
    quality = [verifier_quality(g) for g in groups if g.kind == "pool" and g.scored]
    buckets = difficulty(groups, store)
    by_difficulty = difficulty_rows(groups, all_points, buckets)
    labels = {key: legend_labels(lines) for key, lines in curves(all_points).items()}
    return ReportData(groups, by_group, all_points, confidence, quality, by_difficulty, labels)


def write_report(
    store: Store, out: Path, *, plots: bool = True, price: Price | None = None
) -> tuple[Path, Summary]:
    """Write report.md, CSV tables and PNGs into `out`; return the report's path and its
    one-screen summary. With `price`, dollars are what the stored tokens would cost at that
    price."""
    data = gather(store, price)
    path, _ = write_files(store, data, out, plots=plots, price=price)
    return path, summary_of(data.groups, data.by_group)


def write_files(
    store: Store, data: ReportData, out: Path, *, plots: bool = True, price: Price | None = None
) -> tuple[Path, dict[tuple[str, str], list[str]]]:
    """report.md, the CSV tables and (with `plots`) the PNGs, into `out`: the markdown's path
    and the PNGs drawn per (task, model)."""
    if plots:
        require_extra("report", "drawing the report's plots (plots=False writes the rest)")
    out.mkdir(parents=True, exist_ok=True)
    pools = _pools(data.points)
    _csv(
        out / "points.csv",
        (_point_row(p, data.label(p, pools)) for p in data.points),
    )
    _csv(out / "verifier.csv", (asdict(q) for q in data.quality))
    _csv(out / "difficulty.csv", data.by_difficulty)
    _csv(out / "runs.csv", _run_rows(data.groups))
    _csv(
        out / "signals.csv",
        (
            {"task": c.group.task, "model": c.group.model, "pool": c.group.label, **asdict(q)}
            for c in data.confidence
            for q in c.quality
        ),
    )
    images: dict[tuple[str, str], list[str]] = {}
    if plots:
        images = plot_all(data.points, data.by_difficulty, out, data.labels)
    path = out / "report.md"
    text = markdown(store, data, images)
    extra = allocation_sections(store, data.groups, out, plots=plots)
    if extra:
        text = text.replace(
            "\nTables: points.csv", "\n" + "\n".join(extra) + "\n\nTables: points.csv", 1
        )
    if price is not None:
        text = text.replace("\n## Runs", f"\n{priced_note(price)}\n\n## Runs", 1)
    path.write_text(text, encoding="utf-8")
    return path, images


def priced_note(price: Price) -> str:
    cached = price.prompt if price.cached is None else price.cached
    return (
        f"Dollars are priced at report time: ${price.prompt}/${price.completion}/${cached} "
        "per million prompt/completion/cached tokens (`--price`), not what the runs were "
        "charged."
    )


def _point_row(p: Point, label: str) -> dict[str, object]:
    return {
        "task": p.task,
        "model": p.model,
        "method": p.method,
        "group": p.group,
        "k": p.k,
        "problems": p.problems,
        "accuracy": round(p.accuracy, 6),
        "ci_low": round(p.low, 6),
        "ci_high": round(p.high, 6),
        **{c: getattr(p, c) for c in COSTS},
        "label": label,
    }


def _run_rows(groups: Iterable[Group]) -> Iterable[dict[str, object]]:
    for g in groups:
        for r in g.runs:
            yield {
                "run": r.run_key,
                "task": r.task,
                "model": r.model,
                "model_sha256": r.model_sha256,
                "kind": r.kind,
                "group": g.label,
                "seed": r.seed,
                "versions": " ".join(f"{k}={v}" for k, v in sorted(r.versions.items())),
            }


def _csv(path: Path, rows: Iterable[dict[str, object]]) -> None:
    rows = list(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        if not rows:
            return
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def curves(pts: Iterable[Point]) -> dict[tuple[str, str], dict[str, list[Point]]]:
    """(task, model) -> curve name -> points in k order."""
    pts = list(pts)
    pools = _pools(pts)
    out: dict[tuple[str, str], dict[str, list[Point]]] = {}
    for p in pts:
        name = method_name(p, pools.get((p.task, p.model), 0))
        out.setdefault((p.task, p.model), {}).setdefault(name, []).append(p)
    for by_name in out.values():
        for line in by_name.values():
            line.sort(key=lambda p: p.k)
    return out


_THINK = re.compile(r"think_budget=(\d+)")


def thinking_curves(by_name: dict[str, list[Point]]) -> dict[str, list[tuple[int | None, Point]]]:
    """Direct runs that differ only by their thinking budget (`--think-budget`), one curve per
    method: the method's name without the budget → (budget, point) by budget, and last the
    same method run without a thinking budget (its own prompt, no thinking; budget None).
    Only methods run at two budgets or more."""
    out: dict[str, list[tuple[int | None, Point]]] = {}
    for name, line in by_name.items():
        found = _THINK.search(name)
        if found is None or len(line) != 1:
            continue
        base = _THINK.sub("", name).replace("(, ", "(").replace(", )", ")").replace(", ,", ",")
        base = base.replace("()", "")
        out.setdefault(base, []).append((int(found.group(1)), line[0]))
    curves_ = {}
    for base, points_ in out.items():
        if len(points_) < 2:
            continue
        ordered: list[tuple[int | None, Point]] = sorted(points_, key=lambda bp: bp[0] or 0)
        uncapped = by_name.get(base)
        if uncapped and len(uncapped) == 1:
            ordered.append((None, uncapped[0]))
        curves_[base] = ordered
    return curves_


LABEL_WIDTH = 28  # characters a legend label may take: longer names are shortened


def legend_labels(names: Iterable[str], width: int = LABEL_WIDTH) -> dict[str, str]:
    """A short, distinct label for each curve name, for legends and tables (the report's key
    maps each back to its full name). A name that fits stays; a longer one becomes its
    strategy's name (what precedes its options or its pool) when no other name shares that,
    else the name cut to `width` with an ellipsis when that is still distinct, else its
    strategy's name numbered: `beam(m=2, …, verifier={…})` → `beam`."""
    names = sorted(set(names))

    def base(n: str) -> str:
        return re.split(r"[( ]", n, maxsplit=1)[0][: width - 3] or n[: width - 3]

    bases = Counter(base(n) for n in names)
    cut = Counter(n[: width - 1] for n in names)
    out: dict[str, str] = {}
    numbered: Counter[str] = Counter()
    for n in names:
        if len(n) <= width:
            out[n] = n
        elif bases[base(n)] == 1 and base(n) not in names:
            out[n] = base(n)
        elif cut[n[: width - 1]] == 1:
            out[n] = n[: width - 1].rstrip() + "…"
        else:
            numbered[base(n)] += 1
            out[n] = f"{base(n)} #{numbered[base(n)]}"
    return out


def equal_compute(line_points: dict[str, list[Point]], budget: float) -> dict[str, Point | None]:
    """Each method's most accurate point costing at most `budget` tokens per problem."""
    best: dict[str, Point | None] = {}
    for name, line in line_points.items():
        within = [p for p in line if p.tokens <= budget * (1 + 1e-9)]
        best[name] = max(within, key=lambda p: p.accuracy) if within else None
    return best


def budgets_of(line_points: dict[str, list[Point]]) -> list[float]:
    """Token budgets to compare at: powers of two from the cheapest point up past the dearest."""
    xs = [p.tokens for line in line_points.values() for p in line if p.tokens > 0]
    if not xs:
        return []
    lo, hi = math.ceil(math.log2(min(xs))), math.ceil(math.log2(max(xs)))
    return [float(2**e) for e in range(lo, hi + 1)]


def difficulty_rows(
    groups: Sequence[Group], pts: Sequence[Point], buckets: dict[tuple[str, str], dict[int, str]]
) -> list[dict[str, object]]:
    """Accuracy per difficulty bucket for every method at its largest k."""
    rows: list[dict[str, object]] = []
    largest: dict[tuple[str, str, str], Point] = {}
    pools = _pools(pts)
    for p in pts:
        key = (p.task, p.model, method_name(p, pools.get((p.task, p.model), 0)))
        if key not in largest or p.k > largest[key].k:
            largest[key] = p
    for (task, model, name), p in sorted(largest.items()):
        bucket_of = buckets.get((task, model))
        if not bucket_of:
            continue
        names = np.array([bucket_of.get(int(pid), "") for pid in p.pids])
        for b in sorted(set(names) - {""}):
            vals = p.per_problem[names == b]
            mean, low, high = bootstrap_mean_ci(vals, resamples=1000)
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "method": name,
                    "k": p.k,
                    "bucket": b,
                    "problems": len(vals),
                    "accuracy": round(mean, 6),
                    "ci_low": round(low, 6),
                    "ci_high": round(high, 6),
                }
            )
    return rows


# fixed margins (tight_layout measures every label, which costs more than the drawing); the
# right margin leaves room for the legend outside the axes
_MARGINS = {"left": 0.08, "right": 0.77, "bottom": 0.15, "top": 0.92}


def _palette(n: int) -> list[str]:
    """n distinct colours: matplotlib's default ten, or twenty when there are more curves
    (the default cycle would give two curves one colour)."""
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(n)]


def _fit_legend(fig: Figure, legend: Legend) -> None:
    """Lay the figure out with the fixed margins, then narrow the axes as far as the legend
    (outside them, on the right) needs to fit inside the figure: never cut at its edge."""
    fig.subplots_adjust(**_MARGINS)
    width = fig.bbox.width
    over = legend.get_window_extent().x1 - width + 4
    if over > 0:
        fig.subplots_adjust(right=max(0.3, _MARGINS["right"] - over / width))


def _compact(x: float, _pos: object = None) -> str:
    """A tick label: 300, 3k, 1.5M, 2G, 0.0001."""
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:g}{suffix}"
    return f"{x:g}"


def _slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() else "-" for c in part).strip("-") for part in parts)


def plot_all(
    pts: Sequence[Point],
    by_difficulty: Sequence[dict[str, object]],
    out: Path,
    labels: dict[tuple[str, str], dict[str, str]] | None = None,
) -> dict[tuple[str, str], list[str]]:
    """The PNGs per (task, model); legends carry each curve's short label (`legend_labels`,
    or `labels` given), which the report's key maps back to the full name."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    images: dict[tuple[str, str], list[str]] = {}
    for (task, model), lines in curves(pts).items():
        files = images.setdefault((task, model), [])
        label = (labels or {}).get((task, model)) or legend_labels(lines)
        for cost in COSTS:
            if not any(getattr(p, cost) > 0 for line in lines.values() for p in line):
                continue  # e.g. dollars without --price: nothing to plot
            fig, ax = plt.subplots(figsize=(9.5, 4.8))
            color = dict(zip(sorted(lines), _palette(len(lines)), strict=True))
            for name, line in sorted(lines.items()):
                x = np.array([getattr(p, cost) for p in line])
                y = np.array([100 * p.accuracy for p in line])
                lo = np.array([100 * p.low for p in line])
                hi = np.array([100 * p.high for p in line])
                if len(line) == 1:
                    ax.errorbar(
                        x,
                        y,
                        yerr=[y - lo, hi - y],
                        fmt="o",
                        capsize=4,
                        label=label[name],
                        zorder=3,
                        color=color[name],
                    )
                    continue
                ax.plot(x, y, marker="o", ms=3.5, label=label[name], color=color[name])
                ax.fill_between(x, lo, hi, alpha=0.18, color=color[name], linewidth=0)
            ax.set_xscale("log")
            # plain tick labels: matplotlib's default 10^n labels go through its slow TeX parser
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_compact))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(AXES[cost])
            ax.set_ylabel("accuracy (%) · 95% bootstrap CI over problems")
            ax.set_title(f"{task} · {model}: accuracy against {cost}")
            ax.grid(True, which="both", alpha=0.3)
            _fit_legend(fig, ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
            name = f"scaling_{_slug(task, model, cost)}.png"
            fig.savefig(out / name, dpi=120)
            plt.close(fig)
            files.append(name)
        budgets = budgets_of(lines)
        if budgets:
            files.append(_plot_equal_compute(task, model, lines, budgets, out, label))
        thinking = thinking_curves(lines)
        if thinking:
            files.append(_plot_thinking(task, model, thinking, out))
        rows = [r for r in by_difficulty if r["task"] == task and r["model"] == model]
        if rows:
            files.append(_plot_difficulty(task, model, rows, out, label))
    return images


def _plot_thinking(
    task: str, model: str, thinking: dict[str, list[tuple[int | None, Point]]], out: Path
) -> str:
    """Accuracy against the thinking budget, one line per method; the same method without a
    thinking budget as a dashed level."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = _palette(len(thinking))
    for color, (name, line) in zip(colors, sorted(thinking.items()), strict=True):
        capped = [(b, p) for b, p in line if b is not None]
        x = np.array([b for b, _ in capped], dtype=float)
        y = np.array([100 * p.accuracy for _, p in capped])
        lo = np.array([100 * p.low for _, p in capped])
        hi = np.array([100 * p.high for _, p in capped])
        ax.plot(x, y, marker="o", ms=4, label=name, color=color)
        ax.fill_between(x, lo, hi, alpha=0.18, color=color, linewidth=0)
        for b, p in line:
            if b is None:
                ax.axhline(100 * p.accuracy, ls="--", color=color, label=f"{name}, no thinking")
    ax.set_xscale("log", base=2)
    budgets = sorted({b for line in thinking.values() for b, _ in line if b is not None})
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])  # the budgets run, not powers of 2
    ax.minorticks_off()
    ax.set_xlabel("thinking budget (tokens; --think-budget)")
    ax.set_ylabel("accuracy (%) · 95% bootstrap CI over problems")
    ax.set_title(f"{task} · {model}: accuracy against thinking budget")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    name = f"thinking_{_slug(task, model)}.png"
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return name


def _plot_equal_compute(
    task: str,
    model: str,
    lines: dict[str, list[Point]],
    budgets: list[float],
    out: Path,
    label: dict[str, str],
) -> str:
    series = {}
    for name in sorted(lines):
        best = [equal_compute({name: lines[name]}, b)[name] for b in budgets]
        series[label[name]] = [(p.accuracy, p.low, p.high) if p else None for p in best]
    return _grouped_bars(
        series,
        [f"≤{int(b):,}" for b in budgets],
        xlabel="token budget per problem (each method's best point within it)",
        title=f"{task} · {model}: accuracy at equal compute",
        path=out / f"equal_compute_{_slug(task, model)}.png",
    )


def _plot_difficulty(
    task: str, model: str, rows: list[dict[str, object]], out: Path, label: dict[str, str]
) -> str:
    buckets = sorted({str(r["bucket"]) for r in rows})
    series = {}
    for m in sorted({str(r["method"]) for r in rows}):
        mine = {str(r["bucket"]): r for r in rows if r["method"] == m}
        k = next(iter(mine.values()))["k"]
        series[f"{label.get(m, m)} @ {k}"] = [
            (float(str(r["accuracy"])), float(str(r["ci_low"])), float(str(r["ci_high"])))
            if (r := mine.get(b))
            else None
            for b in buckets
        ]
    counts = {str(r["bucket"]): r["problems"] for r in rows}
    return _grouped_bars(
        series,
        [f"{b}\n({counts[b]} problems)" for b in buckets],
        xlabel="difficulty bucket",
        title=f"{task} · {model}: accuracy by difficulty (largest k)",
        path=out / f"difficulty_{_slug(task, model)}.png",
    )


def _grouped_bars(
    series: dict[str, list[tuple[float, float, float] | None]],
    xlabels: list[str],
    *,
    xlabel: str,
    title: str,
    path: Path,
) -> str:
    """Bars of accuracy (mean, low, high per x) for each series side by side, with CI whiskers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    width = 0.8 / max(1, len(series))
    colors = _palette(len(series))
    for i, (name, values) in enumerate(series.items()):
        ys = [100 * v[0] if v else np.nan for v in values]
        lo = [100 * (v[0] - v[1]) if v else 0.0 for v in values]
        hi = [100 * (v[2] - v[0]) if v else 0.0 for v in values]
        at = np.arange(len(xlabels)) + i * width
        ax.bar(at, ys, width, yerr=[lo, hi], capsize=2, label=name, color=colors[i])
    ax.set_xticks(np.arange(len(xlabels)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels(xlabels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%) · 95% CI")
    ax.set_title(title)
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    _fit_legend(fig, ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


INTRO = (
    "Accuracy is the mean over problems with a 95% percentile-bootstrap interval over "
    "problems. Pooled methods are estimated from one pool of samples per problem: pass@k "
    "unbiased (Chen et al.), vote / weighted_vote as the expected accuracy over k-subsets "
    "drawn without replacement, best_of_n exactly. Costs are means per problem; a pool's "
    "cost at k is k × its mean cost per sample (samples are independent calls)."
)
RUNS_INTRO = (
    "Each invocation of `ponder bench` on a run is a segment; its throughput (tokens per "
    "wall second) is what the seconds axis is measured by, so segments that shared the "
    "machine with other work show up here as slower ones."
)


@dataclass
class Cell:
    """A table cell with what the HTML report adds: a tone (a paired difference whose
    interval excludes 0: "up" or "down") and a tooltip (a short label's full name)."""

    text: str
    tone: str = ""
    title: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass
class Section:
    """A table that the markdown and the HTML report both show."""

    title: str  # "" : no heading of its own
    headers: list[str]
    rows: list[list[str | Cell]]
    intro: str = ""
    collapsed: bool = False  # long tables start folded in the HTML report

    def markdown(self, level: int = 3) -> list[str]:
        lines = [""]
        if self.title:
            lines += [f"{'#' * level} {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines += ["| " + " | ".join(self.headers) + " |", "|---" * len(self.headers) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return lines


def runs_section(store: Store, groups: Sequence[Group]) -> Section:
    rows: list[list[str | Cell]] = []
    for g in groups:
        v = g.runs[0].versions
        rates = [
            f"{tokens / wall:,.0f}"
            for wall, tokens in store.db.execute(
                "SELECT ended - started, tokens FROM segments WHERE rid IN "
                f"({','.join(str(r.rid) for r in g.runs)}) AND tokens > 0 ORDER BY sid"
            )
            if wall
        ]
        rows.append(
            [
                g.task,
                f"{g.model} (sha256 {g.runs[0].model_sha256[:12]})",
                g.label,
                ",".join(str(r.seed) for r in g.runs),
                str(len(g.pids)),
                str(int(g.sizes.sum())),
                ", ".join(rates),
                " ".join(f"{k} {v[k]}" for k in sorted(v)),
            ]
        )
    headers = ["task", "model", "run", "seeds", "problems", "units", "segments: tok/s"]
    return Section("Runs", [*headers, "versions"], rows, RUNS_INTRO)


def full_name(name: str, line: Sequence[Point]) -> str:
    """A curve's method with the run it comes from, when its name does not say it."""
    group = line[0].group if line else ""
    return name if not group or group in name else f"{name} · {group}"


def _named(name: str, label: dict[str, str]) -> str | Cell:
    short = label.get(name, name)
    return short if short == name else Cell(short, title=name)


def sections(data: ReportData, task: str, model: str) -> list[Section]:
    """The tables of one task and model, in the report's order."""
    by_name = curves(data.points).get((task, model), {})
    label = data.labels.get((task, model), {})
    out: list[Section] = []
    out.append(
        Section(
            "Key",
            ["label", "method (full configuration)"],
            [
                [label.get(n, n), full_name(n, by_name[n])]
                for n in sorted(by_name, key=lambda n: label.get(n, n))
            ],
            "Legends and tables show each method by a short label; this is what each stands "
            "for (a pooled method with the pool it is estimated from).",
        )
    )
    rows: list[list[str | Cell]] = []
    for name, line in sorted(by_name.items()):
        for p in line:
            rows.append(
                [_named(name, label), str(p.k), str(p.problems), _fmt_acc(p)]
                + [_fmt_cost(c, getattr(p, c)) for c in COSTS]
            )
    headers = ["method", "k", "problems", "accuracy [95% CI]", "tokens", "FLOPs", "$", "seconds"]
    out.append(Section("", headers, rows, collapsed=len(rows) > 24))
    budgets = budgets_of(by_name)
    if budgets:
        names = sorted(by_name)
        rows = []
        for b in budgets:
            best = equal_compute(by_name, b)
            cells: list[str | Cell] = [f"≤ {int(b):,}"]
            cells += [
                f"{100 * q.accuracy:.1f}% (k={q.k})" if q else "—" for q in (best[n] for n in names)
            ]
            rows.append(cells)
        out.append(
            Section(
                "Accuracy at equal compute (tokens per problem)",
                ["budget", *(label.get(n, n) for n in names)],
                rows,
            )
        )
    thinking = thinking_curves(by_name)
    if thinking:
        out.append(
            Section(
                "Accuracy against thinking budget",
                ["method", "thinking budget", "problems", "accuracy [95% CI]", "tokens"],
                [
                    [
                        name,
                        "none (no thinking)" if b is None else f"{b:,}",
                        str(p.problems),
                        _fmt_acc(p),
                        _fmt_cost("tokens", p.tokens),
                    ]
                    for name, line in sorted(thinking.items())
                    for b, p in line
                ],
                "The same method run with each `--think-budget` (thinking cut at the cap, then "
                "an answer asked for); tokens per problem count thinking and answer.",
            )
        )
    out += paired_sections(by_name, label)
    q_rows = [q for q in data.quality if q.task == task and q.model == model]
    if q_rows:
        out.append(
            Section(
                "Verifier quality",
                ["pool", "scored samples", "AUROC", "FPR at selection", "missed / coverable"],
                [
                    [
                        q.group,
                        str(q.samples),
                        "—" if q.auroc is None else f"{q.auroc:.3f}",
                        "—" if q.false_positive_rate is None else f"{q.false_positive_rate:.3f}",
                        f"{q.missed} / {q.coverage}",
                    ]
                    for q in q_rows
                ],
            )
        )
    for c in data.confidence:
        if (c.group.task, c.group.model) == (task, model):
            out += confidence_sections(c)
    d_rows = [r for r in data.by_difficulty if r["task"] == task and r["model"] == model]
    if d_rows:
        rows = []
        for r in sorted(d_rows, key=lambda r: (str(r["bucket"]), str(r["method"]))):
            acc = float(r["accuracy"])  # type: ignore[arg-type]
            lo, hi = float(r["ci_low"]), float(r["ci_high"])  # type: ignore[arg-type]
            rows.append(
                [
                    str(r["bucket"]),
                    _named(str(r["method"]), label),
                    str(r["k"]),
                    str(r["problems"]),
                    f"{100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
                ]
            )
        out.append(
            Section(
                "By difficulty (each method at its largest k)",
                ["bucket", "method", "k", "problems", "accuracy [95% CI]"],
                rows,
                collapsed=len(rows) > 24,
            )
        )
    return out


def _points(x: float) -> str:
    """A difference in percentage points, signed (never "-0.0")."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def _paired_cell(d: float, lo: float, hi: float) -> Cell:
    tone = "up" if lo > 0 else "down" if hi < 0 else ""
    return Cell(f"{_points(d)} [{_points(lo)}, {_points(hi)}]", tone=tone)


def paired_sections(by_name: dict[str, list[Point]], label: dict[str, str]) -> list[Section]:
    """Each method against each other on the same problems: the accuracy difference with a
    95% paired bootstrap interval, at their largest k and at every k both have. The pass@k
    oracle and replayed stopping rules (compared with the vote in their own section) are
    left out."""
    lines = {
        name: {p.k: p for p in line}
        for name, line in sorted(by_name.items())
        if not any(p.method == "pass@k" or p.method.endswith("(replayed)") for p in line)
    }
    names = list(lines)
    if len(names) < 2:
        return []
    top = {n: lines[n][max(lines[n])] for n in names}
    diffs: dict[tuple[str, str], tuple[float, float, float]] = {}
    for a, b in itertools.combinations(names, 2):
        try:
            d, lo, hi = paired(top[a], top[b])
        except ValueError:  # no problem in common
            continue
        diffs[(a, b)], diffs[(b, a)] = (d, lo, hi), (-d, -hi, -lo)
    matrix: list[list[str | Cell]] = []
    for a in names:
        row: list[str | Cell] = [Cell(f"{label.get(a, a)} @ {top[a].k}", title=a)]
        for b in names:
            found = diffs.get((a, b))
            row.append(_paired_cell(*found) if found else "")
        matrix.append(row)
    out = [
        Section(
            "Paired comparisons at each method's largest k",
            ["row − column", *(f"{label.get(b, b)} @ {top[b].k}" for b in names)],
            matrix,
            "Accuracy of the row's method minus the column's, in points, over the problems "
            "both ran, with a 95% paired bootstrap interval (problems resampled together).",
        )
    ]
    rows: list[list[str | Cell]] = []
    for a, b in itertools.combinations(names, 2):
        for k in sorted(set(lines[a]) & set(lines[b])):
            pa, pb = lines[a][k], lines[b][k]
            try:
                d, lo, hi = paired(pa, pb)
            except ValueError:
                continue
            rows.append(
                [
                    _named(a, label),
                    _named(b, label),
                    str(k),
                    f"{pa.tokens:,.0f} / {pb.tokens:,.0f}",
                    f"{100 * pa.accuracy:.1f}% / {100 * pb.accuracy:.1f}%",
                    _paired_cell(d, lo, hi),
                ]
            )
    if rows:
        out.append(
            Section(
                "Paired comparisons at equal k",
                ["A", "B", "k", "tokens A / B", "accuracy A / B", "Δ A − B [95% paired CI]"],
                rows,
                "k counts samples for pooled methods and whole runs for the others, so equal k "
                "is equal compute only between pooled methods: the tokens say what each spent.",
                collapsed=len(rows) > 24,
            )
        )
    return out


def markdown(store: Store, data: ReportData, images: dict[tuple[str, str], list[str]]) -> str:
    lines = [
        f"# ponder report: {store.path.name}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from `{store.path}`. "
        + INTRO,
    ]
    lines += runs_section(store, data.groups).markdown(level=2)
    for task, model in curves(data.points):
        lines += ["", f"## {task} · {model}"]
        for section in sections(data, task, model):
            lines += section.markdown()
        for img in images.get((task, model), []):
            lines += ["", f"![{img}]({img})"]
    lines += ["", "Tables: points.csv, verifier.csv, signals.csv, difficulty.csv, runs.csv.", ""]
    return "\n".join(lines)


@dataclass
class Confidence:
    """What one unscored pool says about confidence: each signal's AUROC, the selection rules
    at every k, and the stopping rules replayed, beside the plain vote's points."""

    group: Group
    quality: list[SignalQuality]
    selection: list[Point]
    replayed: list[Replayed]
    vote: dict[int, Point]


def confidence_of(store: Store, group: Group, pts: Sequence[Point]) -> Confidence | None:
    """The confidence sections of an unscored pool whose samples carry signals (None if not)."""
    pool = load_signals(store, group, stats=True)
    if not pool.has_signals:
        return None
    vote = {p.k: p for p in pts if p.method == "vote"}
    return Confidence(
        group, signal_quality(pool), selection_points(pool), replay_points(pool), vote
    )


def confidence_sections(c: Confidence) -> list[Section]:
    out = [
        Section(
            f"Confidence signals · {c.group.label}",
            ["signal", "samples", "AUROC"],
            [
                [q.signal, str(q.samples), "—" if q.auroc is None else f"{q.auroc:.3f}"]
                for q in c.quality
            ],
            "AUROC of each trace score against the sample's correctness (0.5: blind), over "
            "every sample that has it (ponder.signals; higher = more confident).",
        )
    ]
    rows: list[list[str | Cell]] = []
    for p in c.selection:
        v = c.vote.get(p.k)
        if v is None:
            continue
        rows.append(
            [
                p.method,
                str(p.k),
                _fmt_acc(p),
                f"{100 * v.accuracy:.1f}%",
                _paired_cell(*paired(p, v)),
            ]
        )
    out.append(
        Section(
            "Selection by confidence against the plain vote (paired, same subsets)",
            ["method", "k", "accuracy [95% CI]", "vote", "Δ [95% paired CI]"],
            rows,
            collapsed=len(rows) > 24,
        )
    )
    n = max(c.vote) if c.vote else 0
    base = c.vote.get(n)
    if c.replayed and base is not None:
        out.append(
            Section(
                f"Adaptive stopping, replayed on the pool (budget {n} samples)",
                [
                    "rule",
                    "samples/problem",
                    "tokens/problem",
                    f"tokens vs vote@{n}",
                    "accuracy [95% CI]",
                    f"Δ vs vote@{n} [95% paired CI]",
                ],
                [
                    [
                        r.label,
                        f"{r.samples.mean():.2f}",
                        f"{r.point.tokens:,.0f}",
                        f"{r.point.tokens / base.tokens:.0%}",
                        _fmt_acc(r.point),
                        _paired_cell(*paired(r.point, base)),
                    ]
                    for r in c.replayed
                ],
                "Each rule run as the live strategy runs it (waves of 4; a wave's samples end in "
                "order of length; the others stop when one settles it, charged what they wrote "
                f"by then), over the stored order and {ORDERS - 1} permutations per problem.",
            )
        )
    return out


# -- compute-optimal allocation ------------------------------------------------------------------
def allocation_sections(
    store: Store, groups: Sequence[Group], out: Path, *, plots: bool = True
) -> list[str]:
    """Markdown (and PNGs) for workload runs (accuracy against the total spent, anytime, beside
    uniform vote@k from a pool of the same problems) and Snell et al.'s figure for each pool
    large enough to cross-fit a router on (oracle, predicted and uniform allocation)."""
    from ponder.bench.router import MIN_PROBLEMS, PROBE, pool_table, snell_crossfit
    from ponder.bench.workload import anytime

    lines: list[str] = []
    pools = [
        g for g in groups if g.kind == "pool" and not g.scored and not g.config.get("workload")
    ]
    for w in (g for g in groups if g.config.get("workload")):
        settings = w.config["workload"]
        size = int(settings.get("problems") or len(w.pids))
        curve = anytime(store, [r.rid for r in w.runs], size)
        uniform = _uniform_totals(store, w, pools)
        sha = settings.get("router_sha256")
        how = f"router {sha[:12]}" if sha else "no router: the chance the leader is not settled"
        lines += ["", f"### Workload budget · {w.task} · {w.model}", ""]
        lines += [
            f"One budget of {settings['tokens_total']:,} tokens (prompt + completion) over "
            f"{size} problems, spent where the predicted gain per token was highest ({how}); "
            "anytime: the accuracy of the votes so far after each sample bought.",
            "",
            "| spent (tokens) | accuracy |",
            "|---|---|",
        ]
        marks = sorted({int(len(curve) * f) - 1 for f in (0.25, 0.5, 0.75, 1.0) if curve})
        lines += [f"| {curve[i][0]:,.0f} | {100 * curve[i][1]:.1f}% |" for i in marks if i >= 0]
        if uniform:
            lines += ["", "Uniform allocation on the same problems (vote@k from the pool):", ""]
            lines += ["| k | total tokens | accuracy |", "|---|---|---|"]
            lines += [f"| {k} | {t:,.0f} | {100 * a:.1f}% |" for k, t, a in uniform]
        if plots and curve:
            name = f"workload_{_slug(w.task, w.model, str(settings['tokens_total']))}.png"
            _plot_lines(
                {
                    "workload (anytime)": [(t, a) for t, a in curve],
                    **({"uniform vote@k": [(t, a) for _, t, a in uniform]} if uniform else {}),
                },
                xlabel="total tokens spent over the set (prompt + completion)",
                title=f"{w.task} · {w.model}: accuracy against the total budget",
                path=out / name,
            )
            lines += ["", f"![{name}]({name})"]
    for g in pools:
        if int(g.sizes.max()) <= PROBE or int((g.sizes >= g.sizes.max()).sum()) < 2 * MIN_PROBLEMS:
            continue
        lines += ["", f"### Compute-optimal allocation (Snell et al.) · {g.task} · {g.label}", ""]
        try:
            import sklearn  # noqa: F401
        except ImportError:
            lines.append(
                "Predicting difficulty needs a fitted router: pip install 'ponder[router]' "
                "(scikit-learn) to draw this figure."
            )
            continue
        table = pool_table(store, g, list(groups))
        curves, notes = snell_crossfit(table)
        lines += [
            *notes,
            "Uniform: vote@k for every problem. Oracle difficulty: each problem's bucket by its "
            "own pass rate; given level (where the set has one, as MATH's 1-5): the level "
            "as the bucket; predicted: the bucket the router predicts from the probe (the "
            f"first {PROBE} samples, so k ≥ {PROBE}); a k per bucket chosen greedily on the "
            "other half's curves of that bucket. Auto: the router per problem over its price "
            "grid. Generated tokens per problem, probe included.",
            "",
            "Each column is the budget uniform vote@k spends (accuracy @ generated tokens "
            "per problem).",
            "",
            "| allocation | "
            + " | ".join(f"vote@{k}'s budget" for k in range(1, table.pool_size + 1, 3))
            + " |",
            "|---" * (1 + len(range(1, table.pool_size + 1, 3))) + "|",
        ]
        for c in curves:
            if c.over != "budget":
                continue  # the router's curve over prices: in the figure only
            cells = [
                f"{100 * c.points[k - 1][1]:.1f}% @ {c.points[k - 1][0]:,.0f}"
                for k in range(1, table.pool_size + 1, 3)
            ]
            lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
        if plots:
            name = f"allocation_{_slug(g.task, g.model, g.label)}.png"
            _plot_lines(
                {c.name: sorted(c.points) for c in curves},
                xlabel="generated tokens per problem (mean over the set)",
                title=f"{g.task} · {g.model}: accuracy against budget by allocation",
                path=out / name,
            )
            lines += ["", f"![{name}]({name})"]
    return lines


def _uniform_totals(
    store: Store, w: Group, pools: Sequence[Group]
) -> list[tuple[int, float, float]]:
    """(k, total tokens over the workload's problems, accuracy) of vote@k from the largest pool
    of the same task and model holding every one of them (prompt + completion, as the
    workload's budget counts)."""
    from ponder.bench.estimators import Pools, majority_at

    size = int(w.config["workload"].get("problems") or len(w.pids))
    for g in sorted(pools, key=lambda g: -int(g.sizes.max())):
        if g.task != w.task or g.model != w.model:
            continue
        rows = np.flatnonzero(np.isin(g.pids, w.pids))
        if len(rows) < len(w.pids):
            continue
        marks = ",".join(str(r.rid) for r in g.runs)
        per = dict(
            store.db.execute(
                "SELECT pid, AVG(policy_prompt + policy_completion + verifier_prompt"
                f" + verifier_completion) FROM units WHERE rid IN ({marks}) GROUP BY pid"
            ).fetchall()
        )
        each = float(sum(per[int(p)] for p in g.pids[rows]))
        pools_ = Pools(
            keys=g.classes[rows],
            scores=g.scores[rows],
            correct=g.correct[rows],
            sizes=g.sizes[rows],
        )
        out = []
        for k in range(1, int(g.sizes[rows].min()) + 1):
            acc = float(np.nansum(majority_at(pools_, k))) / size
            out.append((k, each * k, acc))
        return out
    return []


def _plot_lines(
    lines: dict[str, list[tuple[float, float]]], *, xlabel: str, title: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for name, pts in lines.items():
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, [100 * y for y in ys], marker="o" if len(pts) < 40 else None, ms=3, label=name)
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.15, top=0.92)
    fig.savefig(path, dpi=120)
    plt.close(fig)
