"""``${VAR}`` and ``${VAR:-default}`` in operator config: expanding them, and naming what they left.

Only config files go through here, never request data. An unset ``${VAR}`` becomes the empty
string (a backend whose key or URL is empty is unavailable at call time, which is not a startup
failure); ``unset_notes`` lets an error about such a key say where the empty came from. Any other
shell form (``${X-d}``, ``${X:?msg}``, ``${A:-${B}}``) would stay literal: ``unsupported_forms``
names each, and ``core.config.load_config`` refuses the file. ``$${`` is a literal ``${`` (as in
Docker Compose): ``$${X}`` reads as ``${X}``, unexpanded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from core.paths import state_dir
from core.redact import redact
from core.redact_config import is_secret_entry

__all__ = ["ENV_REFERENCE", "bare_references", "interpolate", "references", "unset_notes", "unsupported_forms"]

#: ``${VAR}`` or ``${VAR:-default}``, not escaped as ``$${``; a default holds no ``${`` (nesting is not supported)
ENV_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:(?!\$\{)[^}])*))?\}")
#: ``$${`` (a literal ``${``) or a reference: one pass, so a variable's value is never read as either
_ESCAPE_OR_REFERENCE = re.compile(r"\$\$\{|" + ENV_REFERENCE.pattern)
_SUPPORTED_FORMS = "only ${VAR} and ${VAR:-default} are expanded"


def interpolate(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of operator config.

    An unset ``${VAR}`` becomes the empty string: a backend whose key or URL is empty is
    unavailable at call time, which is not a startup failure. Only config files go through
    this function, never request data.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, str):  # ``$${X}`` was ``$`` and X's value: there was no way to write ``${``
        return _ESCAPE_OR_REFERENCE.sub(
            lambda m: "${" if m.group(1) is None else _value_of(m.group(1), environ) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def references(text: str) -> tuple[str, ...]:
    """The variables ``text`` reads (``${VAR}``, ``${VAR:-default}``), in order, each once."""
    return tuple(dict.fromkeys(m.group(1) for m in ENV_REFERENCE.finditer(text)))


def _value_of(name: str, environ: Mapping[str, str]) -> str | None:
    """``environ[name]``; ``SWARM_HOME`` is always the state folder (``core.paths.state_dir``:
    absolute, ``XDG_CACHE_HOME`` honoured), so config and code never disagree on where it is."""
    if name == "SWARM_HOME":
        return str(state_dir(environ))
    return environ.get(name)


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, text)`` of every string in the raw file, paths as errors name them (``a.b[0]``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def unsupported_forms(raw: Any) -> list[str]:
    """One line per string of the raw file that keeps a ``${`` once the supported forms are taken
    out (``${X-d}``, ``${X:?msg}``, ``${X:=d}``, ``${A:-${B}}``): it would stay literal."""
    lines = []
    for path, text in _strings(raw):
        rest = _ESCAPE_OR_REFERENCE.sub("", text)
        if "${" in rest:
            if _SECRET_KEY.search(path.rsplit(".", 1)[-1]):  # a key pasted inside ${...}: never shown
                lines.append(f"{path}: its value holds a ${{ form that is not expanded (the value is not shown);"
                             f" {_SUPPORTED_FORMS}")
                continue
            form = _first_unsupported(text)
            where = "" if form == text else f" in {redact(text)!r}"  # a secret may sit in a default
            lines.append(f"{path or '(top level)'}: unsupported form {redact(form)!r}{where}; {_SUPPORTED_FORMS}")
    for path, key in _keys(raw):
        if "${" in key:  # it stayed literal: a route "${KIND:-summarize}" was listed as a valid kind ($schema is fine)
            lines.append(f"{path or '(top level)'}: the key {redact(key)!r} is not expanded (only values are);"
                         " write the name itself")
    return lines


#: ``$NAME`` without braces, not part of ``$$`` or a word: the shell's form, which config keeps as written
_BARE_REFERENCE = re.compile(r"(?<![$\w])\$([A-Za-z_][A-Za-z0-9_]*)")


def bare_references(raw: Any, env: Mapping[str, str] | None = None) -> list[str]:
    """One line per string of the raw file with a ``$NAME`` that looks meant as a variable (a name
    in capitals, or one set in the environment): it is kept as written, and ``dsn: $DATABASE_URL``
    then failed as a connection to a host named "$DATABASE_URL". Not refused: a password may hold
    a ``$``. In a credential's key neither the value nor the name is shown."""
    environ: Mapping[str, str] = os.environ if env is None else env
    lines = []
    for path, text in _strings(raw):
        names = [n for n in _BARE_REFERENCE.findall(_ESCAPE_OR_REFERENCE.sub("", text))
                 if (len(n) > 1 and n.upper() == n) or n in environ]
        if not names:
            continue
        parent, _, key = path.rpartition(".")
        if _SECRET_KEY.search(key) or is_secret_entry(key, text, parent):  # an Authorization header's too
            lines.append(f"{path}: its value holds a $NAME without braces, kept as written (the value is not shown);"
                         " to use a variable, write ${NAME}")
        else:
            lines.append(f"{path}: ${names[0]} is kept as written (no braces); to use the variable, write ${{{names[0]}}}")
    return lines


#: a key whose value is a credential: an unsupported form in it is named without its text
_SECRET_KEY = re.compile(r"key|token|secret|password|dsn|credential", re.IGNORECASE)


def _keys(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(path of the mapping, key)`` of every string key in the raw file."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield path, k
            yield from _keys(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _keys(v, f"{path}[{i}]")


def _first_unsupported(text: str) -> str:
    """The first ``${...}`` of ``text`` (to its matching brace) that is no supported form: the
    whole ``${A:-${B}}``, not the ``${A:-}`` left once the inner ``${B}`` is taken out."""
    start = text.find("${")
    while start != -1:
        if start and text[start - 1] == "$":  # ``$${``: a literal, no form
            start = text.find("${", start + 2)
            continue
        depth, end = 0, len(text)
        for i in range(start, len(text)):
            if text.startswith("${", i):
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    end = i + 1
                    break
        form = text[start:end]
        if not ENV_REFERENCE.fullmatch(form):
            return form
        start = text.find("${", end)
    return _ESCAPE_OR_REFERENCE.sub("", text)  # not reached: the caller found one


def unset_notes(raw: Any, env: Mapping[str, str] | None) -> dict[str, str]:
    """Key path -> `` (from ${VAR}, unset)`` for each value that interpolation left empty because
    the variables it names are unset, and `` (from ${VAR})`` for one they set: an error about that
    key then says where its value came from (``SWARM_LOCAL_PROCESSES=0`` was blamed on the file's
    ``runner.local.processes`` alone), and ``""`` where a default written in the file gave it. The
    variable's value is never quoted (nor is any value a key holding ``${`` was given)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    notes = {}
    for path, text in _strings(raw):
        found = ENV_REFERENCE.findall(text)
        if not found:
            continue
        names = ", ".join("${" + name + "}" for name, _ in found)
        if not interpolate(text, environ):
            notes[path] = f" (from {names}, unset)"
        elif given := [name for name, _ in found if _value_of(name, environ)]:  # a file default is the file's
            notes[path] = f" (from {', '.join('${' + name + '}' for name in given)})"
        else:
            notes[path] = ""  # a file default: nothing to add, but a value interpolation made is never quoted
    return notes
