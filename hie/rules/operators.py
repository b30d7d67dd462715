"""The operators of rule and DTL expressions, on compiled operands, with ObjectScript semantics.

Each takes its compiled operands (context -> value) and returns the compiled operation. A
comparison is numeric when both sides are numbers, else by text; on a list of path values it
holds when it holds for any value (a negative operator: for none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hie.rules.functions import to_number, to_str, truth
from hie.rules.objectscript import concat

__all__ = ["arith", "both", "compare", "either", "predicate", "string_op"]

Value = Any
Fn = Callable[[Any], Value]  # a compiled operand: context -> value


def either(a: Fn, b: Fn) -> Fn:
    return lambda ctx: truth(a(ctx)) or truth(b(ctx))


def both(a: Fn, b: Fn) -> Fn:
    return lambda ctx: truth(a(ctx)) and truth(b(ctx))


def _scalar_compare(op: str, a: Value, b: Value) -> bool:
    x, y = to_number(a, strict=True), to_number(b, strict=True)
    if x is None or y is None:
        x, y = to_str(a), to_str(b)  # type: ignore[assignment]
    if op == "=":
        return bool(x == y)
    if op in ("!=", "'="):
        return bool(x != y)
    if op in ("<", "'>"):
        return bool(x < y) if op == "<" else not bool(x > y)  # type: ignore[operator]
    if op in (">", "'<"):
        return bool(x > y) if op == ">" else not bool(x < y)  # type: ignore[operator]
    if op == "<=":
        return bool(x <= y)  # type: ignore[operator]
    return bool(x >= y)  # type: ignore[operator]


def compare(op: str, a: Fn, b: Fn) -> Fn:
    negative = op in ("!=", "'=")
    positive = "=" if negative else op

    def run(ctx: Any) -> bool:
        left, right = a(ctx), b(ctx)
        if isinstance(left, list):
            hit = any(_scalar_compare(positive, v, right) for v in left)
            return not hit if negative else hit
        return _scalar_compare(op, left, right)

    return run


def predicate(pred: Callable[..., bool], a: Fn, b: Fn) -> Fn:
    return lambda ctx: pred(ctx, a(ctx), b(ctx))


def _sorts_after(a: str, b: str) -> bool:
    """ObjectScript ``]]``: canonical numbers sort first, by value; then strings, by codes."""
    x, y = to_number(a, strict=True), to_number(b, strict=True)
    if x is not None and y is not None:
        return x > y
    if x is not None or y is not None:
        return y is not None  # a string sorts after any number
    return a > b


def string_op(op: str, a: Fn, b: Fn) -> Fn:
    negative = op.startswith("'")
    test: Callable[[str, str], bool] = {
        "[": lambda x, y: y in x,
        "]": lambda x, y: x > y,
        "]]": _sorts_after,
    }[op.lstrip("'")]

    def run(ctx: Any) -> bool:
        left, right = a(ctx), to_str(b(ctx))
        values = left if isinstance(left, list) else [left]
        hit = any(test(to_str(v), right) for v in values)
        return not hit if negative else hit

    return run


def arith(op: str, a: Fn, b: Fn) -> Fn:
    """``_`` concatenation and the arithmetic ``+ - * /``, ``#`` (modulo), ``\\`` (integer)."""
    if op == "_":
        return lambda ctx: concat(a(ctx), b(ctx))

    def run(ctx: Any) -> Value:
        x, y = to_number(a(ctx)) or 0, to_number(b(ctx)) or 0
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if not y:
            return ""  # ObjectScript raises <DIVIDE>; a rule should not stop
        if op == "#":  # modulo takes the divisor's sign, as Python's % does
            return x % y
        if op == "\\":  # integer division truncates toward zero
            quotient = int(abs(x) // abs(y))
            return quotient if (x < 0) == (y < 0) else -quotient
        return x / y

    return run
