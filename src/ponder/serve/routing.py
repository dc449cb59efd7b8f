"""Which strategy a request asks for: the model string `STRATEGY[-N]/MODEL`, or the request's
`ponder` field; a plain model name passes straight through to the backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponder.errors import UsageError
from ponder.runtime.budget import Budget
from ponder.runtime.strategy import STRATEGIES, Strategy, make_strategy
from ponder.runtime.verifiers import SERVED, VERIFIERS, VerifierSpec
from ponder.serve.auth import Limits
from ponder.serve.protocol import ApiError, Sampling


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
    if dash and digits.isdigit():
        name, n = base, int(digits)
    if name not in STRATEGIES:
        raise ApiError(
            404,
            f"The model '{model}': no strategy '{name}' (choose from: {', '.join(STRATEGIES)})",
            param="model",
            code="model_not_found",
        )
    return name, n


def resolve(req: Sampling, served: str, limits: Limits, *, router: str | None = None) -> Route:
    """The strategy and budget a request asks for; `router`: the file `auto` reads (the
    server's --router)."""
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
    budget = capped(opts.budget if opts else None, limits)
    if strategy is None:
        if n is not None or (opts is not None and opts.options):
            raise ApiError(400, "ponder: n and options need a strategy", param="ponder")
        if req.n > limits.max_n:
            raise ApiError(
                413, f"n {req.n} exceeds this key's limit {limits.max_n} (max_n)", param="n"
            )
        return Route(None, budget)
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
                400, "ponder.options.router: the server chooses the router file", param="ponder"
            )
        if router is None:
            raise ApiError(
                400,
                "auto needs a router: this server was started without --router FILE",
                param="model",
            )
        options["router"] = router
    return Route(build(strategy, n, req, limits, options), budget, strategy)


def build(
    name: str, n: int | None, req: Sampling, limits: Limits, options: dict[str, Any]
) -> Strategy:
    cls = STRATEGIES.get(name).obj
    fields = cls.model_fields
    given = dict(options)
    if n is not None:
        if cls.width is None:
            raise ApiError(400, f"strategy '{name}' has no width for n to set", param="ponder.n")
        given[cls.width] = n
    served = VERIFIERS.names(SERVED)
    asked = given.get("verifier")
    named = asked.get("name") if isinstance(asked, dict) else asked
    if isinstance(named, str) and named not in served:
        raise not_served(named, served)
    if req.temperature is not None and "temperature" in fields:
        given.setdefault("temperature", req.temperature)
    try:
        strategy = make_strategy(name, **given)
    except UsageError as e:
        raise ApiError(400, str(e), param="ponder.options") from None
    for spec in verifiers_of(strategy):  # a strategy's default verifier too
        if spec.name not in served:
            raise not_served(spec.name, served)
    if cls.width is not None:
        value = strategy.model_dump()[cls.width]
        if isinstance(value, int) and value > limits.max_n:
            raise ApiError(
                413,
                f"{cls.width} {value} exceeds this key's limit {limits.max_n} (max_n)",
                param="ponder.n",
            )
    return strategy


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


def capped(budget: Budget | None, limits: Limits) -> Budget | None:
    """The request's budget within the key's cap (the cap applies when none is asked for)."""
    cap = limits.max_budget_tokens
    if cap is None:
        return budget
    if budget is None:
        return Budget(tokens=cap)
    if budget.tokens is not None and budget.tokens > cap:
        raise ApiError(
            413,
            f"ponder.budget.tokens {budget.tokens} exceeds this key's limit {cap} "
            "(max_budget_tokens)",
            param="ponder.budget.tokens",
        )
    return budget if budget.tokens is not None else budget.model_copy(update={"tokens": cap})
