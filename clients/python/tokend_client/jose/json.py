"""Strict JSON for JOSE headers and JWT claims (RFC 8259, RFC 7515 §4, RFC 7519 §4,
RFC 8725 §3.2): hand-written on the standard library's scanner because ``json.loads``
keeps the last of duplicate names, accepts NaN/Infinity and has no depth limit."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "strict_json_loads"]

# Integers longer than this are refused whatever sys.set_int_max_str_digits says:
# NumericDates need 10-11 digits, and int() of long digit strings is quadratic.
_MAX_INT_DIGITS = 64
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Arrays and objects open at once, the outer one included: a fixed limit, the same in
# every language's verifier, instead of whatever the recursion limit allows (tokend
# issues claims at most 17 deep: tokens.max_claims_depth <= 16, inside the claims).
MAX_JSON_DEPTH = 64
# A whole string (skipped) or one bracket.
_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    # RFC 7515 §4 / RFC 7519 §4: names MUST be unique; we reject rather than pick one.
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf without this
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


_NUMBER_RULES: dict[str, Callable[[str], Any]] = {
    "parse_float": _finite_float,
    "parse_int": _bounded_int,
    "parse_constant": _reject_constant,
}
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, **_NUMBER_RULES)
# The same rules, but the C scanner builds each object itself, keeping the last of
# duplicate members without a word: strict_json_loads checks that there were none.
_scan_objects_unchecked = json.JSONDecoder(**_NUMBER_RULES).scan_once


def strict_json_loads(data: str | bytes) -> Any:
    """Parse JSON strictly; raise ValueError on anything doubtful.

    Bytes must be UTF-8 (no BOM, no UTF-16 guessing). Refused: duplicate member
    names, NaN/Infinity, numbers that overflow to infinity, integers over 64 digits,
    lone UTF-16 surrogates (RFC 7493 §2.1) and more than MAX_JSON_DEPTH arrays and
    objects open at once.
    """
    text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if not isinstance(text, str):
        raise TypeError("expected str or bytes")
    # Brackets inside strings only add to the count, so the exact (slower) measure runs
    # only for documents that might be too deep.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply")
    # The hot path: one scan of a document that is exactly one JSON object, without
    # JSONDecoder.decode's two whitespace regex matches or _unique_members.
    try:
        value, end = _scan_objects_unchecked(text, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    # Every object of m members has m - 1 commas between them; arrays and strings only
    # add commas. So commas + 1 >= the outer object's members >= len(value): equality
    # means no duplicate name was dropped, at any depth (an inner object with two
    # members would add a comma).
    if end != len(text) or type(value) is not dict or text.count(",") + 1 != len(value):
        # Anything unusual (not an object, whitespace around it, an error, a comma too
        # many) takes the full decoder, which raises the precise error or accepts.
        try:
            value = _STRICT_DECODER.decode(text)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
    # The escape can only be written as "\u…": a backslash test (memchr) skips the regex.
    if "\\" in text and _LONE_SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    return value


def _depth(text: str) -> int:
    """How many arrays and objects of ``text`` are open at once, at most. Exact for valid
    JSON; for invalid JSON (an unterminated string) it may say more, never less."""
    depth = deepest = 0
    for match in _JSON_STRUCTURE.finditer(text):
        char = match.group()
        if char == "[" or char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]" or char == "}":
            depth -= 1
    return deepest


def _refuse_lone_surrogates(value: Any) -> None:
    # Iterative walk: the parsed value may be nested close to the recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("lone surrogate in JSON string") from exc
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)

