"""The router's check from stored pools (no model runs): fit on a train pool, then on test
problems it never saw, `auto` against the best single fixed strategy and n at equal total
generated tokens (paired bootstrap over problems), the tokens `auto` needs to reach the most
accurate fixed strategy's accuracy, and Snell et al.'s figure (accuracy against budget for
oracle-difficulty, predicted-difficulty and uniform allocation; plus the router per problem).

    # the result: a router fitted on GSM8K train, evaluated on GSM8K test 1-100
    .venv/bin/python benchmarks/router.py --train runs/gsm8k-train-pool16.sqlite \\
        --test runs/gsm8k-pool16.sqlite --out benchmarks/out/router-gsm8k

    # a smoke of the pipeline on one pool, split in two halves by problem (NOT the result:
    # train and test come from the same split, and each half is small)
    .venv/bin/python benchmarks/router.py --split-halves runs/gsm8k-pool16.sqlite \\
        --out benchmarks/out/router-smoke

Both pools are read as stored: `ponder bench TASK [--split train] -s vote -n 16 --store S`.
The test problems must not be in the router's training set (refused otherwise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import get_args

from ponder.bench.router import (
    Table,
    build_table,
    compare,
    fit_router,
    snell_curves,
    split_halves,
)
from ponder.runtime.settings import tune_gc
from ponder.types import AnswerWith


def main() -> None:
    tune_gc()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="*", default=[], help="stores of train problems")
    ap.add_argument("--test", type=Path, nargs="*", default=[], help="stores of test problems")
    ap.add_argument("--split-halves", type=Path, default=None, help="smoke: one store, halved")
    ap.add_argument("--task", default=None, help="the task's pool in each store")
    ap.add_argument(
        "--answer-with",
        default=None,
        choices=get_args(AnswerWith),
        help="the pool of samples answered this way [default: each store's largest]",
    )
    ap.add_argument("--probe", type=int, default=4)
    ap.add_argument("--orders", type=int, default=8)
    ap.add_argument("--price", type=float, default=None)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument(
        "--min-problems",
        type=int,
        default=20,
        help="training problems at least (a smoke may lower it)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/router"))
    args = ap.parse_args()
    smoke = args.split_halves is not None
    if smoke:
        whole = build_table(
            [args.split_halves],
            task=args.task,
            probe=args.probe,
            orders=args.orders,
            answer_with=args.answer_with,
        )
        train, test = split_halves(whole)
    else:
        if not args.train or not args.test:
            ap.error("give --train and --test stores (or --split-halves STORE for a smoke)")
        read = {
            "task": args.task,
            "probe": args.probe,
            "orders": args.orders,
            "answer_with": args.answer_with,
        }
        train = build_table(args.train, **read)
        test = build_table(args.test, **read)
    fitted = fit_router(train, price=args.price, min_problems=args.min_problems)
    router = fitted.router
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router.json").write_text(router.model_dump_json(indent=1) + "\n")
    c = compare(router, test, resamples=args.resamples)
    curves = snell_curves(router, train, test)
    lines = report(train, test, c, curves, smoke)
    text = "\n".join(lines) + "\n"
    (args.out / "router.md").write_text(text)
    (args.out / "router.json.summary").write_text(json.dumps(router.validation, indent=1))
    draw(curves, test, args.out / "allocation.png", smoke)
    print(text)
    print(f"written: {args.out}/router.md, router.json, allocation.png")


def report(train: Table, test: Table, c, curves, smoke: bool) -> list[str]:  # type: ignore[no-untyped-def]
    d, lo, hi = c.difference
    title = "SMOKE (one pool split in two halves by problem; not the result)" if smoke else ""
    lines = [
        f"# Router: fitted on {train.problems} problems, evaluated on {test.problems} unseen"
        + (f" — {title}" if title else ""),
        "",
        f"train: {', '.join(train.stores)} ({train.task}); test: {', '.join(test.stores)} "
        f"({test.task}); pool {test.pool_size} samples; probe {test.probe}; tokens are "
        "generated (completion) tokens per problem, probe included.",
        "",
        "| | accuracy | generated tokens / problem |",
        "|---|---|---|",
        f"| auto (router price) | {100 * c.auto[0]:.1f}% [{100 * c.auto_ci[0]:.1f}, "
        f"{100 * c.auto_ci[1]:.1f}] | {c.auto[1]:,.0f} |",
        f"| best fixed within auto's tokens: {c.equal} | {100 * c.equal_point[0]:.1f}% | "
        f"{c.equal_point[1]:,.0f} |",
        f"| most accurate fixed: {c.best} | {100 * c.best_point[0]:.1f}% | "
        f"{c.best_point[1]:,.0f} |",
        "",
        f"auto − {c.equal} at equal tokens: {100 * d:+.1f} points [{100 * lo:+.1f}, "
        f"{100 * hi:+.1f}] (95% paired bootstrap over problems).",
    ]
    if c.to_match is None:
        lines.append(f"auto does not reach {c.best}'s accuracy over its price grid.")
    else:
        lines.append(
            f"auto reaches {c.best}'s accuracy ({100 * c.best_point[0]:.1f}%) at "
            f"{c.to_match:,.0f} tokens/problem: {c.to_match / c.best_point[1]:.0%} of its "
            f"{c.best_point[1]:,.0f} (read off auto's curve over prices)."
        )
    lines += ["", "auto over its price grid:", "", "| price | accuracy | tokens |", "|---|---|---|"]
    lines += [f"| {p:.3g} | {100 * a:.1f}% | {t:,.0f} |" for p, a, t in c.curve]
    if c.versus_rule:
        lines += [
            "",
            "The router against the price rule alone (`auto` without a router: one sample at "
            "a time from the first, no probe) at equal generated tokens: the router at the "
            "price (of a fine grid) where it generates the most tokens without generating more "
            "than the rule, 95% paired bootstrap over problems:",
            "",
            "| price rule alone | accuracy | tokens | router (price) | accuracy | tokens "
            "| Δ router − rule |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in c.versus_rule:
            rule = f"| price {v.price:g} | {100 * v.accuracy:.1f}% | {v.tokens:,.0f} |"
            if v.router_price is None:
                lines.append(rule + " none that cheap | — | — | — |")
                continue
            d, lo, hi = v.difference
            lines.append(
                rule + f" {v.router_price:.3g} | {100 * v.router_accuracy:.1f}% | "
                f"{v.router_tokens:,.0f} | {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
            )
    lines += ["", "Fixed strategies on the test problems:", "", "| strategy | accuracy | tokens |"]
    lines += ["|---|---|---|"]
    lines += [f"| {k} | {100 * a:.1f}% | {t:,.0f} |" for k, (a, t) in c.fixed.items()]
    lines += ["", "Snell's figure (allocation.png), at each uniform vote@k budget:", ""]
    # every allocation by budget (the router's own curve is over prices: in the figure only)
    by_budget = [cu for cu in curves if cu.over == "budget"]
    lines += ["| budget of | " + " | ".join(cu.name for cu in by_budget) + " |"]
    lines += ["|---" * (1 + len(by_budget)) + "|"]
    for k in range(test.pool_size):
        cells = [f"{100 * cu.points[k][1]:.1f}% @ {cu.points[k][0]:,.0f}" for cu in by_budget]
        lines.append(f"| vote@{k + 1} | " + " | ".join(cells) + " |")
    return lines


def draw(curves, test: Table, path: Path, smoke: bool) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for cu in curves:
        pts = sorted(cu.points)
        ax.plot([t for t, _ in pts], [100 * a for _, a in pts], marker="o", ms=3, label=cu.name)
    ax.set_xlabel("generated tokens per problem (probe included)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{test.task} · {test.model}: allocation"
        + (" — SMOKE (halves of one pool)" if smoke else "")
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
