"""`ponder report`: a markdown report, CSV tables and PNG plots from a store.

- scaling curves: accuracy against tokens, FLOPs, dollars and seconds per problem, one line per
  method with its 95% band, log x;
- accuracy at equal compute: each method's best point within a token budget;
- per-difficulty bars (MATH levels, else buckets of the model's own pass rate);
- verifier quality (AUROC, false-positive rate at the selection point) of scored pools.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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


def summary_table(store: Store, rids: Sequence[int]) -> Table:
    """One screen: each method at k=1 and at its largest k, for the given runs."""
    wanted = set(rids)
    groups = [g for g in load_groups(store) if wanted & {r.rid for r in g.runs}]
    return summary_of(groups, {id(g): points(g, resamples=1000) for g in groups})


def summary_of(groups: Sequence[Group], by_group: dict[int, list[Point]]) -> Table:
    """The summary table from points already computed (keyed by id() of their group)."""
    models = sorted({g.model for g in groups})
    tasks = sorted({g.task for g in groups})
    t = Table(title=f"{', '.join(tasks)} · {', '.join(models)}", box=box.SIMPLE)
    cols = ["task"] if len(tasks) > 1 else []
    cols += ["method", "k", "problems", "accuracy [95% CI]", "tokens/pr.", "s/pr."]
    for col in cols:
        t.add_column(col, justify="left" if col in ("task", "method") else "right", no_wrap=True)
    pools = sorted({g.label for g in groups if g.kind == "pool"})
    for g in groups:
        pts = by_group[id(g)]
        largest = max(p.k for p in pts)
        for p in pts:
            if p.k not in (1, largest):
                continue
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
    return t


def write_report(
    store: Store, out: Path, *, plots: bool = True, price: Price | None = None
) -> tuple[Path, Table]:
    """Write report.md, CSV tables and PNGs into `out`; return the report's path and its
    one-screen summary. With `price`, dollars are what the stored tokens would cost at that
    price."""
    if plots:
        require_extra("report", "drawing the report's plots (plots=False writes the rest)")
    out.mkdir(parents=True, exist_ok=True)
    groups = load_groups(store, price)
    by_group = {id(g): points(g) for g in groups}
    all_points = [p for g in groups for p in by_group[id(g)]]
    confidence: list[Confidence] = []
    for g in groups:
        if g.kind == "pool" and not g.scored:
            found = confidence_of(store, g, by_group[id(g)])
            if found is not None:
                confidence.append(found)
    for c in confidence:
        all_points += c.selection + [r.point for r in c.replayed]
    quality = [verifier_quality(g) for g in groups if g.kind == "pool" and g.scored]
    buckets = difficulty(groups, store)
    by_difficulty = difficulty_rows(groups, all_points, buckets)

    _csv(out / "points.csv", (_point_row(p) for p in all_points))
    _csv(out / "verifier.csv", (asdict(q) for q in quality))
    _csv(out / "difficulty.csv", by_difficulty)
    _csv(out / "runs.csv", _run_rows(groups))
    _csv(
        out / "signals.csv",
        (
            {"task": c.group.task, "model": c.group.model, "pool": c.group.label, **asdict(q)}
            for c in confidence
            for q in c.quality
        ),
    )

    images: dict[tuple[str, str], list[str]] = {}
    if plots:
        images = plot_all(all_points, by_difficulty, out)
    path = out / "report.md"
    text = markdown(store, groups, all_points, quality, by_difficulty, images, confidence)
    if price is not None:
        cached = price.prompt if price.cached is None else price.cached
        text = text.replace(
            "\n## Runs",
            f"\nDollars are priced at report time: ${price.prompt}/${price.completion}/${cached} "
            "per million prompt/completion/cached tokens (`--price`), not what the runs were "
            "charged.\n\n## Runs",
            1,
        )
    path.write_text(text, encoding="utf-8")
    return path, summary_of(groups, by_group)


def _point_row(p: Point) -> dict[str, object]:
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


def _compact(x: float, _pos: object = None) -> str:
    """A tick label: 300, 3k, 1.5M, 2G, 0.0001."""
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:g}{suffix}"
    return f"{x:g}"


def _slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() else "-" for c in part).strip("-") for part in parts)


def plot_all(
    pts: Sequence[Point], by_difficulty: Sequence[dict[str, object]], out: Path
) -> dict[tuple[str, str], list[str]]:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    images: dict[tuple[str, str], list[str]] = {}
    for (task, model), lines in curves(pts).items():
        files = images.setdefault((task, model), [])
        for cost in COSTS:
            if not any(getattr(p, cost) > 0 for line in lines.values() for p in line):
                continue  # e.g. dollars without --price: nothing to plot
            fig, ax = plt.subplots(figsize=(9.5, 4.8))
            for name, line in sorted(lines.items()):
                x = np.array([getattr(p, cost) for p in line])
                y = np.array([100 * p.accuracy for p in line])
                lo = np.array([100 * p.low for p in line])
                hi = np.array([100 * p.high for p in line])
                if len(line) == 1:
                    ax.errorbar(
                        x, y, yerr=[y - lo, hi - y], fmt="o", capsize=4, label=name, zorder=3
                    )
                    continue
                (drawn,) = ax.plot(x, y, marker="o", ms=3.5, label=name)
                ax.fill_between(x, lo, hi, alpha=0.18, color=drawn.get_color(), linewidth=0)
            ax.set_xscale("log")
            # plain tick labels: matplotlib's default 10^n labels go through its slow TeX parser
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_compact))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(AXES[cost])
            ax.set_ylabel("accuracy (%) · 95% bootstrap CI over problems")
            ax.set_title(f"{task} · {model}: accuracy against {cost}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            fig.subplots_adjust(**_MARGINS)
            name = f"scaling_{_slug(task, model, cost)}.png"
            fig.savefig(out / name, dpi=120)
            plt.close(fig)
            files.append(name)
        budgets = budgets_of(lines)
        if budgets:
            files.append(_plot_equal_compute(task, model, lines, budgets, out))
        rows = [r for r in by_difficulty if r["task"] == task and r["model"] == model]
        if rows:
            files.append(_plot_difficulty(task, model, rows, out))
    return images


def _plot_equal_compute(
    task: str, model: str, lines: dict[str, list[Point]], budgets: list[float], out: Path
) -> str:
    series = {}
    for name in sorted(lines):
        best = [equal_compute({name: lines[name]}, b)[name] for b in budgets]
        series[name] = [(p.accuracy, p.low, p.high) if p else None for p in best]
    return _grouped_bars(
        series,
        [f"≤{int(b):,}" for b in budgets],
        xlabel="token budget per problem (each method's best point within it)",
        title=f"{task} · {model}: accuracy at equal compute",
        path=out / f"equal_compute_{_slug(task, model)}.png",
    )


def _plot_difficulty(task: str, model: str, rows: list[dict[str, object]], out: Path) -> str:
    buckets = sorted({str(r["bucket"]) for r in rows})
    series = {}
    for m in sorted({str(r["method"]) for r in rows}):
        mine = {str(r["bucket"]): r for r in rows if r["method"] == m}
        k = next(iter(mine.values()))["k"]
        series[f"{m} @ {k}"] = [
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
    for i, (name, values) in enumerate(series.items()):
        ys = [100 * v[0] if v else np.nan for v in values]
        lo = [100 * (v[0] - v[1]) if v else 0.0 for v in values]
        hi = [100 * (v[2] - v[0]) if v else 0.0 for v in values]
        ax.bar(np.arange(len(xlabels)) + i * width, ys, width, yerr=[lo, hi], capsize=2, label=name)
    ax.set_xticks(np.arange(len(xlabels)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels(xlabels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%) · 95% CI")
    ax.set_title(title)
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.subplots_adjust(**_MARGINS)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def markdown(
    store: Store,
    groups: Sequence[Group],
    pts: Sequence[Point],
    quality: Sequence[VerifierQuality],
    by_difficulty: Sequence[dict[str, object]],
    images: dict[tuple[str, str], list[str]],
    confidence: Sequence[Confidence] = (),
) -> str:
    lines = [
        f"# ponder report: {store.path.name}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from `{store.path}`. "
        "Accuracy is the mean over problems with a 95% percentile-bootstrap interval over "
        "problems. Pooled methods are estimated from one pool of samples per problem: pass@k "
        "unbiased (Chen et al.), vote / weighted_vote as the expected accuracy over k-subsets "
        "drawn without replacement, best_of_n exactly. Costs are means per problem; a pool's "
        "cost at k is k × its mean cost per sample (samples are independent calls).",
        "",
        "## Runs",
        "",
        "Each invocation of `ponder bench` on a run is a segment; its throughput (tokens per "
        "wall second) is what the seconds axis is measured by, so segments that shared the "
        "machine with other work show up here as slower ones.",
        "",
        "| task | model | run | seeds | problems | units | segments: tok/s | versions |",
        "|---|---|---|---|---|---|---|---|",
    ]
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
        lines.append(
            f"| {g.task} | {g.model} (sha256 {g.runs[0].model_sha256[:12]}) | {g.label} | "
            f"{','.join(str(r.seed) for r in g.runs)} | {len(g.pids)} | {int(g.sizes.sum())} | "
            f"{', '.join(rates)} | " + " ".join(f"{k} {v[k]}" for k in sorted(v)) + " |"
        )
    for (task, model), by_name in curves(pts).items():
        lines += ["", f"## {task} · {model}", ""]
        lines += [
            "| method | k | problems | accuracy [95% CI] | tokens | FLOPs | $ | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, line in sorted(by_name.items()):
            for p in line:
                lines.append(
                    f"| {name} | {p.k} | {p.problems} | {_fmt_acc(p)} | "
                    + " | ".join(_fmt_cost(c, getattr(p, c)) for c in COSTS)
                    + " |"
                )
        budgets = budgets_of(by_name)
        if budgets:
            names = sorted(by_name)
            lines += ["", "### Accuracy at equal compute (tokens per problem)", ""]
            lines += ["| budget | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for b in budgets:
                best = equal_compute(by_name, b)
                cells = [
                    f"{100 * q.accuracy:.1f}% (k={q.k})" if q else "—"
                    for q in (best[n] for n in names)
                ]
                lines.append(f"| ≤ {int(b):,} | " + " | ".join(cells) + " |")
        q_rows = [q for q in quality if q.task == task and q.model == model]
        if q_rows:
            lines += ["", "### Verifier quality", ""]
            lines += [
                "| pool | scored samples | AUROC | FPR at selection | missed / coverable |",
                "|---|---|---|---|---|",
            ]
            for q in q_rows:
                auc = "—" if q.auroc is None else f"{q.auroc:.3f}"
                fpr = "—" if q.false_positive_rate is None else f"{q.false_positive_rate:.3f}"
                lines.append(
                    f"| {q.group} | {q.samples} | {auc} | {fpr} | {q.missed} / {q.coverage} |"
                )
        for c in confidence:
            if (c.group.task, c.group.model) == (task, model):
                lines += confidence_markdown(c)
        d_rows = [r for r in by_difficulty if r["task"] == task and r["model"] == model]
        if d_rows:
            lines += ["", "### By difficulty (each method at its largest k)", ""]
            lines += ["| bucket | method | k | problems | accuracy [95% CI] |"]
            lines += ["|---|---|---|---|---|"]
            for r in sorted(d_rows, key=lambda r: (str(r["bucket"]), str(r["method"]))):
                acc = float(r["accuracy"])  # type: ignore[arg-type]
                lo, hi = float(r["ci_low"]), float(r["ci_high"])  # type: ignore[arg-type]
                lines.append(
                    f"| {r['bucket']} | {r['method']} | {r['k']} | {r['problems']} | "
                    f"{100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] |"
                )
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


def confidence_markdown(c: Confidence) -> list[str]:
    lines = ["", f"### Confidence signals · {c.group.label}", ""]
    lines += [
        "AUROC of each trace score against the sample's correctness (0.5: blind), over every "
        "sample that has it (ponder.signals; higher = more confident).",
        "",
        "| signal | samples | AUROC |",
        "|---|---|---|",
    ]
    for q in c.quality:
        lines.append(
            f"| {q.signal} | {q.samples} | {'—' if q.auroc is None else f'{q.auroc:.3f}'} |"
        )
    lines += ["", "### Selection by confidence against the plain vote (paired, same subsets)", ""]
    lines += [
        "| method | k | accuracy [95% CI] | vote | Δ [95% paired CI] |",
        "|---|---|---|---|---|",
    ]
    for p in c.selection:
        v = c.vote.get(p.k)
        if v is None:
            continue
        d, lo, hi = paired(p, v)
        lines.append(
            f"| {p.method} | {p.k} | {_fmt_acc(p)} | {100 * v.accuracy:.1f}% | "
            f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
        )
    n = max(c.vote) if c.vote else 0
    base = c.vote.get(n)
    if c.replayed and base is not None:
        lines += ["", f"### Adaptive stopping, replayed on the pool (budget {n} samples)", ""]
        lines += [
            "Each rule run as the live strategy runs it (waves of 4; a wave's samples end in "
            "order of length; the others stop when one settles it, charged what they wrote "
            f"by then), over the stored order and {ORDERS - 1} permutations per problem.",
            "",
            f"| rule | samples/problem | tokens/problem | tokens vs vote@{n} | accuracy [95% CI] "
            f"| Δ vs vote@{n} [95% paired CI] |",
            "|---|---|---|---|---|---|",
        ]
        for r in c.replayed:
            d, lo, hi = paired(r.point, base)
            lines.append(
                f"| {r.label} | {r.samples.mean():.2f} | {r.point.tokens:,.0f} | "
                f"{r.point.tokens / base.tokens:.0%} | {_fmt_acc(r.point)} | "
                f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
            )
    return lines
