"""The Hendrycks-MATH answer normaliser and ``\\boxed{}`` extraction used by the ``math`` reward.

Reimplemented from the behaviour described in VLM-R1-REWARDS.md §14, including its
failure modes: a normaliser that raises makes the caller fall back to raw equality.

>>> strip_string("\\\\dfrac12")
'\\\\frac{1}{2}'
>>> strip_string("x = 0.5")
'\\\\frac{1}{2}'
>>> strip_string("3/4")
'\\\\frac{3}{4}'
>>> boxed_content("so \\\\boxed{\\\\frac{1}{2}} done")
'\\\\frac{1}{2}'
"""

from __future__ import annotations


class NormaliserError(ValueError):
    """The normaliser rejects its input (the caller compares raw strings instead)."""


def boxed_content(text: str) -> str:
    """The content of the last ``\\boxed{…}`` (or the whole text when there is none).

    Raises ValueError when the last box is a ``\\fbox`` or a ``\\boxed`` not followed
    by ``{``, which VLM-R1's extraction rejects.
    """
    if "\\boxed " in text:
        return text.rsplit("\\boxed ", maxsplit=1)[-1].split("$", maxsplit=1)[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return text
    depth = 0
    end = -1
    for k in range(start, len(text)):
        ch = text[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                end = k
                break
    if end < 0:
        return text
    span = text[start : end + 1]
    if not (span.startswith("\\boxed{") and span.endswith("}")):
        raise ValueError(f"not a \\boxed{{…}} span: {span[:40]!r}")
    return span[len("\\boxed{") : -1]


def _fix_fracs(string: str) -> str:
    pieces = string.split("\\frac")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\frac"
        if not piece:
            raise NormaliserError("\\frac without an argument")
        if piece[0] == "{":
            out += piece
            continue
        if len(piece) < 2:
            return string
        a, b, rest = piece[0], piece[1], piece[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}{" + rest
    return out


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError as exc:
        raise NormaliserError(str(exc)) from exc
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    if "\\text{ " not in string:
        return string
    parts = string.split("\\text{ ")
    if len(parts) != 2:
        raise NormaliserError("more than one \\text{ unit")
    return parts[0]


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    pieces = string.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        if not piece:
            raise NormaliserError("\\sqrt without an argument")
        out += "\\sqrt" + piece if piece[0] == "{" else "\\sqrt{" + piece[0] + "}" + piece[1:]
    return out


def strip_string(string: str) -> str:
    """Hendrycks' ``strip_string``; raises NormaliserError where the original raises."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    sides = string.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        string = sides[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)
