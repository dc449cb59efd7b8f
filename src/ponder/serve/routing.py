"""Which strategy a request asks for: the model string `STRATEGY[-N]/MODEL`, or the request's
`ponder` field; a plain model name passes straight through to the backend."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from ponder.errors import UsageError
from ponder.runtime.budget import Budget
from ponder.runtime.strategy import (
    MULTIPLIES,
    STRATEGIES,
    Strategy,
    TooWide,
    make_strategy,
    option_names,
)
from ponder.runtime.verifiers import SERVED, VERIFIERS, VerifierSpec
from ponder.serve.auth import Limits
from ponder.serve.protocol import ApiError, Sampling

# A strategy's bill when its key sets no max_budget_tokens: this many times what max_n samples
# of max_tokens, each after a prompt at the prompt limit, may cost; room for the verifier and
# search calls around the samples (a default beam, 20 calls a step for 12 steps, fits many
# times at the default limits). Without it, options each within the key's limits could still
# multiply past any bound (beam's n × m × max_steps: max_n³ steps).
BUDGET_FACTOR = 16


@dataclass
class Route:
    strategy: Strategy | None  # None: pass the request straight to the backend
    budget: Budget | None
    name: str | None = None  # the strategy's registered name


def served_models(served: str) -> list[str]:
    """What /v1/models lists: the backend's model, and each strategy over it."""
    return [served, *(f"{name}/{served}" for name in STRATEGIES)]


def split_model(model: str, served: str) -> tuple[str | None, int | None]:
    """(strategy, n) named by the model string, (None, None) for the plain model."""
    if model == served:
        return None, None
    head, sep, tail = model.partition("/")
    if not sep or tail != served:
        raise ApiError(
            404,
            f"The model '{model}' does not exist (this server has '{served}' and "
            f"STRATEGY[-N]/{served}, e.g. vote-8/{served}; see /v1/models)",
            param="model",
            code="model_not_found",
        )
    name, n = head, None
    base, dash, digits = head.rpartition("-")
    if dash and digits.isascii() and digits.isdigit():  # (not ٣ or ３: int() reads those)
        name, n = base, int(digits)
    if name not in STRATEGIES:
        raise ApiError(
            404,
            f"The model '{model}': no strategy '{name}' (choose from: {', '.join(STRATEGIES)})",
            param="model",
            code="model_not_found",
        )
    return name, n


def resolve(
    req: Sampling, served: str, limits: Limits, *, prompt_tokens: int, router: str | None = None
) -> Route:
    """The strategy and budget a request asks for; `prompt_tokens`: the key's prompt limit;
    `router`: the file `auto` reads (the server's --router)."""
    named, n = split_model(req.model, served)
    opts = req.ponder
    strategy = named
    if opts is not None and opts.strategy is not None:
        if named is not None and opts.strategy != named:
            raise ApiError(
                400,
                f"ponder.strategy '{opts.strategy}' contradicts the model '{req.model}'",
                param="ponder.strategy",
            )
        strategy = opts.strategy
        if strategy not in STRATEGIES:
            raise ApiError(
                400,
                f"ponder.strategy: no strategy '{strategy}' (choose from: {', '.join(STRATEGIES)})",
                param="ponder.strategy",
            )
    if opts is not None and opts.n is not None:
        if n is not None and opts.n != n:
            raise ApiError(
                400, f"ponder.n {opts.n} contradicts the model '{req.model}'", param="ponder.n"
            )
        n = opts.n
    asked = opts.budget if opts else None
    if strategy is None:
        if n is not None or (opts is not None and opts.options):
            raise ApiError(400, "ponder: n and options need a strategy", param="ponder")
        if req.n > limits.max_n:
            raise ApiError(
                413, f"n {req.n} exceeds this key's limit {limits.max_n} (max_n)", param="n"
            )
        # (no default budget: n, max_tokens and the prompt limit already bound it)
        return Route(None, capped(asked, limits.max_budget_tokens))
    cap, setting = limits.max_budget_tokens, "max_budget_tokens"
    if cap is None:
        cap = BUDGET_FACTOR * limits.max_n * (limits.max_tokens + prompt_tokens)
        setting = (
            f"without max_budget_tokens: {BUDGET_FACTOR} × max_n × (max_tokens + the "
            "prompt-token limit)"
        )
    budget = capped(asked, cap, setting)
    if req.n != 1:
        raise ApiError(
            400,
            "n: a strategy returns one answer; give its sample count in the model name "
            "(vote-8/…) or as ponder.n",
            param="n",
        )
    options = dict(opts.options) if opts else {}
    if strategy == "auto":
        if "router" in options:
            raise ApiError(
                400,
                "ponder.options.router: the server chooses the router file",
                param="ponder.options.router",
            )
        if router is not None:  # without one, auto is the price rule
            options["router"] = router
    # the field an error about the width names: the one that gave it
    width_from = "ponder.n" if opts is not None and opts.n is not None else "model"
    return Route(build(strategy, n, req, limits, options, width_from), budget, strategy)


def build(
    name: str,
    n: int | None,
    req: Sampling,
    limits: Limits,
    options: dict[str, Any],
    width_from: str = "ponder.n",
) -> Strategy:
    cls = STRATEGIES.get(name).obj
    names = option_names(cls)
    for key in options:  # (before make_strategy, whose own keywords must not be reached)
        if key not in names:
            raise ApiError(
                400,
                f"ponder.options.{key}: strategy '{name}' has no such option (its options: "
                f"{', '.join(names)})",
                param=f"ponder.options.{key}",
            )
    given = dict(options)
    if n is not None:
        if cls.width is None:
            raise ApiError(400, f"strategy '{name}' has no width for n to set", param=width_from)
        if cls.width in given:
            raise ApiError(
                400,
                f"ponder.options.{cls.width}: the width is given by the model name or ponder.n "
                "too; give it once",
                param=f"ponder.options.{cls.width}",
            )
        given[cls.width] = n
    served = VERIFIERS.names(SERVED)
    asked = given.get("verifier")
    named = asked.get("name") if isinstance(asked, dict) else asked
    if isinstance(named, str) and named not in served:
        raise not_served(named, served)
    # (auto with a router samples at its pool's temperature, the one its predictions hold for:
    # a request's is not passed on)
    routed = name == "auto" and bool(given.get("router"))
    if req.temperature is not None and "temperature" in cls.model_fields and not routed:
        given.setdefault("temperature", req.temperature)
    try:
        strategy = make_strategy(name, **given)
    except UsageError as e:
        where = f"ponder.options.{e.option}" if e.option else "ponder.options"
        if e.option == cls.width and e.option not in options:
            where = width_from  # (the width came from the model name or ponder.n)
        raise ApiError(413 if isinstance(e, TooWide) else 400, str(e), param=where) from None
    for spec in verifiers_of(strategy):  # a strategy's default verifier too
        if spec.name not in served:
            raise not_served(spec.name, served)
    check_limits(strategy, options, n is not None, limits, width_from)
    return strategy


def check_limits(
    strategy: Strategy,
    options: Collection[str],
    width_given: bool,
    limits: Limits,
    width_from: str = "ponder.n",
) -> None:
    """413 for an option over the key's limits: the width (given or the strategy's default)
    and every other option that multiplies the work (`MULTIPLIES`) the request sets, over
    max_n; every `…_tokens` option it sets (each bounds a generation), over max_tokens. The
    other options' defaults stand (small; the budget bounds them all together)."""
    cls = type(strategy)
    for key, field in cls.model_fields.items():
        value = getattr(strategy, key)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        param = f"ponder.options.{key}" if key in options else "ponder.n"
        if key == cls.width and key not in options and width_given:
            param = width_from
        if (key == cls.width or (key in options and multiplies(field))) and value > limits.max_n:
            asked = f"{param if key in options else key} {value}"
            if key not in options and not width_given:
                asked += f" (strategy {cls.name}'s default; give a smaller ponder.n)"
            raise ApiError(
                413, f"{asked} exceeds this key's limit {limits.max_n} (max_n)", param=param
            )
        if key in options and key.endswith("_tokens") and value > limits.max_tokens:
            raise ApiError(
                413,
                f"{param} {value} exceeds this key's limit {limits.max_tokens} (max_tokens)",
                param=param,
            )


def multiplies(field: FieldInfo) -> bool:
    """Whether an option multiplies the work (its field is marked with `MULTIPLIES`)."""
    extra = field.json_schema_extra
    return isinstance(extra, dict) and all(extra.get(k) == v for k, v in MULTIPLIES.items())


def not_served(name: str, served: list[str]) -> ApiError:
    # (another model, or a URL the client chose, would be opened on the client's behalf)
    return ApiError(
        400,
        f"verifier '{name}' is not available through the server (choose from: {', '.join(served)})",
        param="ponder.options.verifier",
    )


def verifiers_of(strategy: Strategy) -> list[VerifierSpec]:
    """Every verifier spec among the strategy's options."""
    return [v for v in vars(strategy).values() if isinstance(v, VerifierSpec)]


def capped(
    asked: Budget | None, cap: int | None, setting: str = "max_budget_tokens"
) -> Budget | None:
    """The request's budget within the key's cap (the cap applies when none is asked for);
    `setting`: where the cap comes from, for the message."""
    if asked is not None:  # (a plain Budget: a subclass would never equal "no caps")
        asked = Budget(**asked.model_dump())
    if cap is None:
        return asked
    if asked is None:
        return Budget(tokens=cap)
    if asked.tokens is not None and asked.tokens > cap:
        raise ApiError(
            413,
            f"ponder.budget.tokens {asked.tokens} exceeds this key's limit {cap} ({setting})",
            param="ponder.budget.tokens",
        )
    return asked if asked.tokens is not None else asked.model_copy(update={"tokens": cap})
