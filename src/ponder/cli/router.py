"""`ponder router fit | show | eval`: a router fitted from a bench store (which strategy and n
to run per problem after a cheap probe), read by `-s auto --router FILE`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, cast, get_args

import typer

from ponder.allocation import RouterModel, load_router
from ponder.allocation.model import FORMAT
from ponder.cli.common import app, out, output_file
from ponder.errors import UsageError
from ponder.types import AnswerWith

router_app = typer.Typer(
    no_args_is_help=True,
    help="Fit, show and evaluate the router that `-s auto` reads.",
)
app.add_typer(router_app, name="router")


@router_app.command("fit")
def fit(
    stores: Annotated[
        list[Path], typer.Argument(help="Stores with a pool of samples per problem (train split)")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="The router file to write (JSON)")] = Path(
        "router.json"
    ),
    task: Annotated[
        str | None, typer.Option("--task", help="The task's pool to fit on [default: the largest]")
    ] = None,
    answer_with: Annotated[
        str | None,
        typer.Option(
            "--answer-with",
            help="Fit on the pool of samples answered this way (tir: Python mid-reasoning); "
            "`auto` then samples so [default: the largest pool]",
        ),
    ] = None,
    probe: Annotated[int, typer.Option("--probe", min=1, help="Samples in the probe")] = 4,
    orders: Annotated[
        int, typer.Option("--orders", min=1, help="Random orders each pool is read in")
    ] = 8,
    price: Annotated[
        float | None,
        typer.Option(
            "--price",
            min=0.0,
            help="Accuracy one generated token is worth [default: the uniform vote's rate at "
            "the top of its training curve]",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Fit a router from stored pools (scikit-learn: pip install 'ponder[router]')."""
    from ponder.bench.router import build_table, fit_router, sklearn_missing

    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise sklearn_missing() from None
    modes = get_args(AnswerWith)
    if answer_with is not None and answer_with not in modes:
        raise UsageError(f"--answer-with {answer_with}: not one of {', '.join(modes)}")
    mode = cast("AnswerWith | None", answer_with)
    if price is not None and not math.isfinite(price):
        raise UsageError(f"--price {price}: not a finite number")
    # checked before the fit: a store or data file given as --out is never written over
    output_file(out_file, "--out", inputs=stores, keeps=f'"format": "{FORMAT}"')
    table = build_table(stores, task=task, probe=probe, orders=orders, answer_with=mode)
    fitted = fit_router(table, price=price)
    out_file.write_text(fitted.router.model_dump_json(indent=1) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps({"router": str(out_file), **_summary(fitted.router)}, indent=2))
        return
    show_router(fitted.router)
    out.print(f"router: {out_file}")


@router_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A router file")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """What a router file holds: its training, arms and validation."""
    router = load_router(file)
    if as_json:
        print(json.dumps(_summary(router), indent=2))
        return
    show_router(router)


@router_app.command("eval")
def evaluate(
    file: Annotated[Path, typer.Argument(help="A router file")],
    stores: Annotated[list[Path], typer.Argument(help="Stores of test problems it never saw")],
    task: Annotated[str | None, typer.Option("--task", help="The task's pool")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON")] = False,
) -> None:
    """`auto` against every fixed strategy on unseen problems (refuses training problems)."""
    from ponder.bench.router import build_table, compare

    router = load_router(file)
    table = build_table(
        stores,
        task=task,
        probe=router.probe,
        orders=router.training.orders,
        answer_with=router.answer_with,
    )
    c = compare(router, table)
    numbers = {
        "problems": c.problems,
        "auto": {"accuracy": c.auto[0], "ci": list(c.auto_ci), "tokens": c.auto[1]},
        "equal_tokens": {
            "fixed": c.equal,
            "accuracy": c.equal_point[0],
            "tokens": c.equal_point[1],
            "auto_minus_fixed": list(c.difference),
        },
        "most_accurate_fixed": {
            "name": c.best,
            "accuracy": c.best_point[0],
            "tokens": c.best_point[1],
            "auto_tokens_to_match": c.to_match,
        },
    }
    if as_json:
        print(json.dumps(numbers, indent=2))
        return
    d, lo, hi = c.difference
    out.print(
        f"auto: {100 * c.auto[0]:.1f}% [{100 * c.auto_ci[0]:.1f}, {100 * c.auto_ci[1]:.1f}] at "
        f"{c.auto[1]:,.0f} generated tokens/problem on {c.problems} unseen problems"
    )
    out.print(
        f"best fixed within those tokens: {c.equal} {100 * c.equal_point[0]:.1f}% at "
        f"{c.equal_point[1]:,.0f}; auto − it: {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] "
        "(95% paired bootstrap)"
    )
    match = "never, over its price grid" if c.to_match is None else f"{c.to_match:,.0f}"
    out.print(
        f"most accurate fixed: {c.best} {100 * c.best_point[0]:.1f}% at {c.best_point[1]:,.0f}; "
        f"auto reaches it at: {match}"
    )


def _summary(router: RouterModel) -> dict[str, object]:
    data = router.model_dump(mode="json")
    data["training"] = {k: v for k, v in data["training"].items() if k != "fingerprints"} | {
        "fingerprints": f"{len(router.training.fingerprints)} problems"
    }
    return data


def show_router(router: RouterModel) -> None:
    for line in router.summary:
        out.print(line, markup=False)
    out.print("arm | train accuracy | train tokens | out-of-fold Brier", markup=False)
    arms = router.validation.get("arms", {})
    for a in router.arms:
        brier = arms.get(a.name, {}).get("brier_out_of_fold")
        out.print(
            f"  {a.name} | {100 * a.train_accuracy:.1f}% | {a.train_tokens:,.0f} | "
            f"{'—' if brier is None else brier}",
            markup=False,
        )
    top = sorted(router.arms[-1].accuracy.coef.items(), key=lambda kv: -abs(kv[1]))[:5]
    out.print(
        f"largest coefficients of {router.arms[-1].name}: "
        + ", ".join(f"{k} {v:+.2f}" for k, v in top),
        markup=False,
    )
