"""The ObjectScript of a DTL ``<code>`` block that HIE runs, translated into DTL actions.

IRIS runs ``<code>`` as ObjectScript inside the transform. HIE runs the part of it that DTL
itself can say: a block is translated once, at load, into the actions an ``<assign>``,
``<if>``, ``<trace>`` or ``<break/>`` gives, so it runs (and fails) the same way:

- ``Set x = expr`` (also ``Set a=1, b=2`` and ``Set (a,b)=0``) -> assign. The left side is a
  variable (shared with ``<assign>`` and expressions), ``target.{PID:5.1}`` or an object path
  (``target.Observations.(k1).Code``);
- ``If cond { } ElseIf cond { } Else { }`` -> if;
- ``Do ##class(X).Y(args)`` / ``Do ..Method(args)`` -> do (the call's value is dropped);
  ``Do target.List.Insert(v)``, ``.InsertAt(v,i)``, ``.SetAt(v,k)``, ``.RemoveAt(k)``,
  ``.Clear()`` -> the assign actions that mean the same;
- ``Quit`` -> break: it leaves the innermost ``<foreach>`` or, outside one, ends the
  transform, as the ``Quit`` IRIS compiles ``<break/>`` to does;
- ``$$$TRACE(x)`` -> a trace at debug; ``$$$LOGINFO``, ``$$$LOGWARNING``, ``$$$LOGERROR``,
  ``$$$LOGALERT`` log at info, warning, error, error;
- postconditions (``Set:cond x=1``, ``Quit:done``), abbreviations (``S I E D Q``) and
  comments (``//``, ``;``, ``#;``, ``/* */``). In expressions ``$$$OK`` is 1.

Anything else is refused with a ``ConfigError`` naming the file and line, the ``<code>``
element, the statement, and what to write instead.
"""

from __future__ import annotations

import re
from typing import Any

from hie.errors import ConfigError
from hie.rules.object_paths import (
    closing,
    code_chars,
    parse_object_path,
    split_arguments,
    string_end,
)

__all__ = ["INSTEAD", "translate_code"]

#: What to do with ObjectScript HIE does not run.
INSTEAD = (
    "write it as DTL actions (<assign>, <if>, <foreach>), or move it into a class method "
    "called as ##class(Pkg.Helper).Method(...) and map that method to a Python function in "
    "the functions: section of hie-mapping.yaml"
)
_COMMANDS = {"set": "set", "s": "set", "if": "if", "i": "if", "do": "do", "d": "do"}
_COMMANDS |= {"quit": "quit", "q": "quit", "elseif": "elseif", "else": "else", "e": "else"}
_MACROS = {"TRACE": "debug", "LOGINFO": "info", "LOGWARNING": "warning"}
_MACROS |= {"LOGERROR": "error", "LOGALERT": "error"}
_VALUE_MACROS = {"OK": "1", "NULLOREF": '""'}
_HINTS = {
    "for": "loop with <foreach> over the segments or collection instead",
    "while": "loop with <foreach> over the segments or collection instead",
    "write": "log with $$$TRACE(...) or a <trace> action instead",
    "return": "use Quit, which leaves a <foreach> or ends the transform",
}
#: Every ObjectScript command (and abbreviation): where a new command starts on a line, so
#: one HIE does not run is named as such rather than read as part of an expression.
_ALL_COMMANDS = set(_COMMANDS) | {
    *("write", "w", "kill", "k", "new", "n", "for", "f", "while", "return", "ret", "throw"),
    *("try", "catch", "merge", "m", "lock", "l", "job", "j", "open", "o", "close", "c"),
    *("use", "u", "read", "r", "hang", "h", "halt", "goto", "g", "xecute", "x", "continue"),
    *("tstart", "ts", "tcommit", "tc", "trollback", "tro", "zwrite", "zw", "zn", "break", "b"),
}
_WORD = re.compile(r"[A-Za-z]+")
_VARIABLE = re.compile(r"^[A-Za-z%][A-Za-z0-9]*$")
_VIRTUAL_TARGET = re.compile(r"^target\.\{[^{}]*\}$")
_METHOD_END = re.compile(r"\.([A-Za-z]+)\($")


def translate_code(text: str, *, source: str, line: int, offset: int = 0) -> list[dict[str, Any]]:
    """The DTL actions (as data) a ``<code>`` block's ObjectScript means.

    Args:
        text: the block's ObjectScript.
        source: the file, for errors.
        line: the line of the ``<code>`` element.
        offset: how many lines below the element's own line ``text`` starts.

    Raises:
        ConfigError: a statement outside the subset in the module docstring.
    """
    return _Reader(text, source, line, line + offset).block(closing=False, opened=0)


class _Reader:
    def __init__(self, text: str, source: str, code_line: int, first_line: int) -> None:
        self.text = text
        self.source = source
        self.code_line = code_line
        self.first_line = first_line
        self.pos = 0

    def line_at(self, pos: int) -> int:
        return self.first_line + self.text.count("\n", 0, pos)

    def error(self, start: int, problem: str, instead: str = INSTEAD) -> ConfigError:
        line = self.line_at(start)
        statement = self.text[start:].split("\n", 1)[0].strip()
        return ConfigError(
            f"{self.source}:{line}: <code> at line {self.code_line}, its line "
            f"{line - self.code_line + 1}: {statement!r} {problem}; {instead}"
        )

    def skip(self) -> None:
        """Past whitespace, newlines and comments."""
        text = self.text
        while self.pos < len(text):
            if text[self.pos].isspace():
                self.pos += 1
            elif text.startswith(("//", ";", "#;"), self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                self.pos = len(text) if end < 0 else end + 2
            else:
                return

    def block(self, *, closing: bool, opened: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            self.skip()
            if self.pos >= len(self.text):
                if closing:
                    raise self.error(opened, "opens a '{' that is not closed", "close it")
                return out
            if self.text[self.pos] == "}":
                if not closing:
                    raise self.error(self.pos, "closes a block that was not opened", "remove it")
                self.pos += 1
                return out
            out.extend(self.statement())

    def statement(self) -> list[dict[str, Any]]:
        start = self.pos
        if self.text.startswith("$$$", start):
            return [self.macro(start)]
        m = _WORD.match(self.text, start)
        word = m.group() if m else self.text[start : start + 1]
        command = _COMMANDS.get(word.lower())
        if m is None or command is None:
            hint = _HINTS.get(word.lower(), INSTEAD)
            raise self.error(start, f"uses {word!r}, which is not ObjectScript HIE runs", hint)
        self.pos = m.end()
        condition = None
        if self.text[self.pos : self.pos + 1] == ":":
            self.pos += 1
            condition = self.expression(self.argument(postcondition=True), start)
        if command in ("elseif", "else"):
            raise self.error(start, f"has no If before its {word}", "add the If")
        actions = {"set": self.set, "if": self.if_, "do": self.do, "quit": self.quit}[command](
            start
        )
        if condition is None:
            return actions
        return [
            {"type": "if", "condition": condition, "true": actions, "line": self.line_at(start)}
        ]

    def argument(self, *, postcondition: bool = False) -> str:
        """The text of a command's argument (or postcondition), up to where it ends."""
        text, start, depth = self.text, self.pos, 0
        if not postcondition:
            while text[self.pos : self.pos + 1] in (" ", "\t"):
                self.pos += 1
        while self.pos < len(text):
            c = text[self.pos]
            if c == '"':
                self.pos = string_end(text, self.pos)
                continue
            if c == "{" and text[self.pos - 1 : self.pos] == ".":  # a virtual property path
                close = text.find("}", self.pos)
                self.pos = len(text) if close < 0 else close + 1
                continue
            if depth == 0 and (c in "\n{};" or text.startswith(("//", "/*"), self.pos)):
                break
            if c in " \t" and depth == 0 and (postcondition or self.command_follows()):
                break
            depth += {"(": 1, ")": -1}.get(c, 0)
            self.pos += 1
        return text[start : self.pos].strip()

    def command_follows(self) -> bool:
        """At whitespace after a complete operand, does a new command start?"""
        text = self.text
        before = text[: self.pos].rstrip(" \t")
        if not before or not (before[-1].isalnum() or before[-1] in '")}%'):
            return False
        j = self.pos
        while text[j : j + 1] in (" ", "\t"):
            j += 1
        if text.startswith("$$$", j):
            return True
        m = _WORD.match(text, j)
        after = text[m.end() : m.end() + 1] if m else "x"
        return m is not None and m.group().lower() in _ALL_COMMANDS and after in " \t:\n{"

    def expression(self, text: str, start: int) -> str:
        """``text`` with value macros replaced; refuses any other macro."""

        def macro(m: re.Match[str]) -> str:
            if m.group(1).upper() not in _VALUE_MACROS:
                raise self.error(start, f"uses the macro $$${m.group(1)}", INSTEAD)
            return _VALUE_MACROS[m.group(1).upper()]

        parts = re.split(r'("(?:[^"]|"")*")', text)
        return "".join(p if p.startswith('"') else re.sub(r"\$\$\$(\w+)", macro, p) for p in parts)

    def set(self, start: int) -> list[dict[str, Any]]:
        arg = self.argument()
        out: list[dict[str, Any]] = []
        for item in split_arguments(arg) if arg else [""]:
            at = _assignment_at(item)
            if at < 0 or not item[at + 1 :].strip():
                raise self.error(start, "is not Set name = value", "write Set name = value")
            lhs, value = item[:at].strip(), self.expression(item[at + 1 :].strip(), start)
            names = split_arguments(lhs[1:-1]) if lhs.startswith("(") else [lhs]
            for name in names:
                if not (_VARIABLE.match(name) or _is_target(name)):
                    raise self.error(
                        start,
                        f"sets {name}, which HIE cannot (only variables, target.{{...}} paths "
                        "and target properties)",
                    )
                out.append(_assign(name, value, "set", "", self.line_at(start)))
        return out

    def if_(self, start: int) -> list[dict[str, Any]]:
        condition = self.argument()
        if self.text[self.pos : self.pos + 1] != "{" or not condition:
            raise self.error(
                start, "is an If without a { block }", "write If condition { ... } (braces)"
            )
        self.pos += 1
        parts = [self.expression(p, start) for p in split_arguments(condition)]
        node: dict[str, Any] = {
            "type": "if",
            # If a,b is "a and then b" in ObjectScript
            "condition": " && ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0],
            "true": self.block(closing=True, opened=start),
            "line": self.line_at(start),
        }
        back = self.pos
        self.skip()
        m = _WORD.match(self.text, self.pos)
        word = m.group().lower() if m else ""
        if m is not None and word == "elseif":
            here = self.pos
            self.pos = m.end()
            node["false"] = self.if_(here)
        elif (
            m is not None and word in ("else", "e") and self.text[m.end() : m.end() + 1] in " \t\n{"
        ):
            here = self.pos
            self.pos = m.end()
            self.skip()
            if self.text[self.pos : self.pos + 1] != "{":
                raise self.error(here, "is an Else without a { block }", "write Else { ... }")
            self.pos += 1
            node["false"] = self.block(closing=True, opened=here)
        else:
            self.pos = back
        return [node]

    def do(self, start: int) -> list[dict[str, Any]]:
        arg = self.argument()
        line = self.line_at(start)
        out: list[dict[str, Any]] = []
        for call in split_arguments(arg) if arg else [""]:
            if call.startswith(("##class(", "..")) and call.endswith(")"):
                out.append({"type": "do", "value": self.expression(call, start), "line": line})
                continue
            split = _method_call(call)
            if split is None or not _is_target(split[0]):
                raise self.error(
                    start,
                    f"calls {call or 'nothing'}: HIE runs Do ##class(X).Method(...), "
                    "Do ..Method(...) and the target's collection methods",
                )
            out.append(self.collection(*split, start))
        return out

    def collection(self, path: str, method: str, args_text: str, start: int) -> dict[str, Any]:
        """``target.List.Insert(v)`` and friends as an assign action."""
        args = [self.expression(a, start) for a in split_arguments(args_text)]
        line = self.line_at(start)
        shapes = {"insert": 1, "insertat": 2, "setat": 2, "removeat": 1, "clear": 0}
        name = method.lower()
        if shapes.get(name) != len(args):
            raise self.error(
                start,
                f"calls {method}() with {len(args)} argument(s)",
                "use Insert(v), InsertAt(v,i), SetAt(v,key), RemoveAt(key) or Clear()",
            )
        if name == "insert":
            return _assign(path, args[0], "insert", "", line)
        if name == "insertat":
            return _assign(path, args[0], "insert", args[1], line)
        if name == "setat":
            return _assign(f"{path}.({args[1]})", args[0], "set", "", line)
        if name == "removeat":
            return _assign(path, "", "remove", args[0], line)
        return _assign(path, "", "clear", "", line)

    def argumentless(self) -> bool:
        """True when the command just read has no argument: the line, block or a comment ends
        next, or two spaces come first (ObjectScript's rule before another command)."""
        rest = self.text[self.pos :]
        after = rest.lstrip(" \t")
        return (
            not after
            or after[0] in "\r\n};"
            or after.startswith(("//", "/*", "#;"))
            or rest.startswith(("  ", "\t"))
        )

    def quit(self, start: int) -> list[dict[str, Any]]:
        value = "" if self.argumentless() else self.argument()
        if value not in ("", "$$$OK", "1"):
            raise self.error(
                start,
                "returns a value HIE cannot use",
                "use Quit (no value) to leave a <foreach> or end the transform",
            )
        return [{"type": "break", "line": self.line_at(start)}]

    def macro(self, start: int) -> dict[str, Any]:
        m = re.compile(r"\$\$\$(\w+)\(").match(self.text, start)
        level = _MACROS.get(m.group(1).upper()) if m else None
        if m is None or level is None:
            raise self.error(
                start,
                "is not a macro HIE runs ($$$TRACE, $$$LOGINFO, $$$LOGWARNING, "
                "$$$LOGERROR, $$$LOGALERT)",
            )
        self.pos = m.end() - 1
        inner = self.argument()
        args = split_arguments(inner[1:-1])
        return {
            "type": "trace",
            "value": self.expression(args[0] if args else '""', start),
            "level": level,
            "line": self.line_at(start),
        }


def _assign(prop: str, value: str, action: str, key: str, line: int) -> dict[str, Any]:
    return {
        "type": "assign",
        "property": prop,
        "value": value,
        "action": action,
        "key": key,
        "line": line,
    }


def _assignment_at(item: str) -> int:
    """Where the ``=`` of ``name = value`` is (the first one outside brackets), or -1."""
    return next((i for i, c, depth in code_chars(item) if c == "=" and depth == 0), -1)


def _is_target(text: str) -> bool:
    """``target.{...}`` or an object path into the target (``target.Items.(k1).Code``)."""
    if _VIRTUAL_TARGET.match(text):
        return True
    try:
        path = parse_object_path(text)
    except ConfigError:
        return False
    return path is not None and path.owner == "target"


def _method_call(call: str) -> tuple[str, str, str] | None:
    """``target.List.Insert(v)`` as ``("target.List", "Insert", "v")``: the last method, whose
    parenthesis closes at the end (arguments may call methods too)."""
    if not call.endswith(")"):
        return None
    for i, c, depth in code_chars(call):
        if c == "(" and depth == 1:  # a top-level parenthesis
            m = _METHOD_END.search(call, 0, i + 1)
            if m is not None and closing(call, i) == len(call) - 1:
                return call[: m.start()], m.group(1), call[i + 1 : -1]
    return None
