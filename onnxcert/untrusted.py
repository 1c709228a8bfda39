"""Reading what a user (or anyone who can write a file) hands onnxcert: paths, YAML, JSON.

Every function here turns a hostile input into one short line, never a hang, a traceback or a
message the size of the input:

- ``quote``: the repr of a value, capped, for error messages (a YAML alias bomb is 276 bytes and
  its repr 254 MB; a nested list 100,000 deep has no repr at all).
- ``input_file``: a path that must be a regular file. A FIFO would block the read forever, a
  character device (``/dev/zero``) never ends, and a directory deserves its own message.
- ``parse_json`` and ``check_tree``: JSON or YAML data whose nesting and (for YAML, whose
  aliases share nodes) expanded size are bounded, so that later code may walk it recursively.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_QUOTE = 80  # characters of a quoted value in an error message
MAX_DEPTH = 64  # nesting of lists and mappings in a config, rules file, report or metadata
MAX_NODES = 1_000_000  # values in a config or rules file once its YAML aliases are expanded

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 3, MAX_QUOTE, MAX_QUOTE, MAX_QUOTE
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` for an error message: at most ``limit`` characters, one line, and cheap
    however large or deep ``value`` is (reprlib stops at a few items and levels)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a hostile object's __repr__; values from parsers never get here
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip(text: Any, limit: int = MAX_QUOTE) -> str:
    """``str(text)`` on one line, at most ``limit`` characters (for names shown without quotes)."""
    text = str(text).replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(path: str | Path, limit: int = 200) -> str:
    """A path quoted for a message, capped (a path given on the command line can be any length)."""
    return quote(str(path), limit)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def input_file(path: str | Path, what: str, error: type[Exception] = InputError) -> Path:
    """``path`` when it is a regular file (or a link to one) that exists; otherwise ``error``
    with one line: it does not exist, it is a directory, it cannot be read, or it is a special
    file (a FIFO would block the read forever, ``/dev/zero`` never ends)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {shown(path)} does not exist") from None
    except OSError as exc:
        raise error(f"{what} {shown(path)} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {shown(path)} is a directory, not a file") from None
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise error(f"{what} {shown(path)} is {kind}, not a regular file; onnxcert reads only "
                        "regular files") from None
    return path


def special_kind(path: str | Path) -> str | None:
    """What a path is when it exists and is neither a regular file nor a directory, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def parse_json(text: str | bytes, what: str, error: type[Exception] = InputError,
               max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with one-line errors, nesting at most ``max_depth`` deep.

    JSON's own parser raises RecursionError on deep nesting and ValueError on integers of more
    than 4300 digits; both become ``error``.
    """
    try:
        value = json.loads(text)
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply (more than {max_depth} levels)") from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise error(f"{what} is not valid JSON ({quote(str(exc))})") from None
    check_tree(value, what, error, max_depth=max_depth, max_nodes=None)
    return value


def check_tree(value: Any, what: str, error: type[Exception] = InputError, *, max_depth: int = MAX_DEPTH,
               max_nodes: int | None = MAX_NODES) -> None:
    """Nesting at most ``max_depth`` and, when ``max_nodes`` is given, at most that many values
    once shared nodes (YAML aliases) are counted every time they are referenced.

    Iterative, and each distinct container is expanded once, so that an alias bomb (a few
    hundred bytes naming 10^30 values) is measured in microseconds without being expanded.
    """
    size: dict[int, int] = {}  # id(container) -> its expanded number of values
    depth_of: dict[int, int] = {}  # id(container) -> the depth of its deepest branch
    stack: list[tuple[Any, bool]] = [(value, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list, tuple)):
            continue
        key = id(node)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else list(node)
        if done:
            on_path.discard(key)
            subs = [c for c in children if isinstance(c, (dict, list, tuple))]
            depth_of[key] = 1 + max((depth_of[id(c)] for c in subs), default=0)
            size[key] = 1 + len(children) - len(subs) + sum(size[id(c)] for c in subs)
            if depth_of[key] > max_depth:
                raise error(f"{what} is nested too deeply (more than {max_depth} levels)")
            if max_nodes is not None and size[key] > max_nodes:
                raise error(f"{what} expands to more than {max_nodes:,} values (YAML aliases that "
                            "repeat each other: an alias bomb?)")
            continue
        if key in size:
            continue
        if key in on_path:  # a recursive YAML alias (&a [*a]): infinitely deep
            raise error(f"{what} is nested too deeply (a structure that contains itself)")
        if len(on_path) >= max_depth:
            raise error(f"{what} is nested too deeply (more than {max_depth} levels)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if isinstance(c, (dict, list, tuple)) and id(c) not in size)
