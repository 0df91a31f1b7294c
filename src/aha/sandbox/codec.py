"""Plain-data codec between the judge and the candidate's process: builtin values only.

A value crosses the process boundary as one JSON line. Only these exact types are encoded —
`type(v) is T`, so a subclass of int/str/list (whose `__eq__` could answer anything) is refused:
None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict.
`decode` builds fresh builtin objects from the JSON, so the judge never holds an object whose
class the candidate defined, and every comparison the tests make runs builtin code.

Encoding: None/bool/str are JSON's own; everything else is a list whose first item is a tag:
["i", hex] int (hex: no 4300-digit limit on either side), ["f", repr] float (repr round-trips,
inf and nan included), ["c", repr, repr] complex, ["b", hex] bytes, ["l"|"t"|"s"|"z", *items]
list/tuple/set/frozenset, ["d", [k, v], ...] dict (keys need not be strings).

Stdlib only, no `from __future__`: the runner copies this file's text into the sandbox, in front
of the prelude and the judge scripts.
"""

import json

MAX_DEPTH = 100  # deeper values are refused, not recursed into (no RecursionError in the judge)
_SEQUENCES = {"l": list, "t": tuple, "s": set, "z": frozenset}
_SEQUENCE_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "z"}


class CodecError(ValueError):
    """The value is not plain data (or the line is not one of ours)."""


def encode(value, depth=0):
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return ["i", hex(value)]
    if kind is float:
        return ["f", repr(value)]
    if kind is complex:
        return ["c", repr(value.real), repr(value.imag)]
    if kind is bytes:
        return ["b", value.hex()]
    if kind in _SEQUENCE_TAGS:
        return [_SEQUENCE_TAGS[kind], *(encode(item, depth + 1) for item in value)]
    if kind is dict:
        return ["d", *([encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items())]
    raise CodecError(f"not plain data: {kind.__name__}")


def decode(data, depth=0):
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    kind = type(data)
    if data is None or kind is bool or kind is str:
        return data
    if kind is not list or not data or type(data[0]) is not str:
        raise CodecError(f"bad encoded value of type {kind.__name__}")
    tag, items = data[0], data[1:]
    try:
        return _decode_tagged(tag, items, depth)
    except (TypeError, ValueError, OverflowError) as e:  # bad hex, unhashable set member, …
        raise CodecError(f"bad encoded {tag!r}: {e}") from None


def _decode_tagged(tag, items, depth):
    if tag in ("i", "f", "b", "c") and not all(type(x) is str for x in items):
        raise CodecError(f"bad encoded {tag!r}")
    if tag == "i" and len(items) == 1:
        return int(items[0], 16)
    if tag == "f" and len(items) == 1:
        return float(items[0])
    if tag == "c" and len(items) == 2:
        return complex(float(items[0]), float(items[1]))
    if tag == "b" and len(items) == 1:
        return bytes.fromhex(items[0])
    if tag in _SEQUENCES:
        return _SEQUENCES[tag](decode(item, depth + 1) for item in items)
    if tag == "d" and all(type(kv) is list and len(kv) == 2 for kv in items):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in items}
    raise CodecError(f"bad encoded value with tag {tag!r}")


def _no_constants(name):
    raise CodecError(f"JSON constant {name} is not plain data here")


def dumps(value) -> bytes:
    """One line: `value` encoded, ASCII, newline-terminated."""
    return json.dumps(encode(value), separators=(",", ":")).encode("ascii") + b"\n"


def loads(line: bytes):
    """The value of one line from `dumps`; CodecError on anything else (bare JSON numbers too)."""
    try:
        data = json.loads(line, parse_constant=_no_constants)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise CodecError(f"not a JSON line: {e}") from None
    return decode(data)
