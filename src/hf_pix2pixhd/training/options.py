"""Typed options from nested dataclasses: values parsed by each field's type, ``--help``
text from the fields themselves, and hints for unknown names.

A field's one-line help is its ``metadata["help"]``, else its entry in the class docstring's
``Args:`` section (Google style, as :class:`~hf_pix2pixhd.data.DataConfig` documents itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import yaml

NULLS = ("null", "none", "~")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ConfigError(ValueError):
    """A config value or key is wrong; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One leaf of a nested config: ``model.ngf``, its type hint, default and help."""

    key: str
    hint: Any
    default: Any
    help: str


def options(cls: type, prefix: str = "") -> list[Option]:
    """Every leaf field of the dataclass ``cls`` (nested sections flattened with dots)."""
    hints = typing.get_type_hints(cls)
    found: list[Option] = []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            found += options(hint, f"{prefix}{item.name}.")
            continue
        default = "required" if item.default is dataclasses.MISSING else item.default
        if item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        found.append(Option(f"{prefix}{item.name}", hint, default, field_help(cls, item)))
    return found


def field_help(cls: type, item: dataclasses.Field) -> str:
    """The field's help: ``metadata["help"]``, else its ``Args:`` entry in the docstring."""
    if item.metadata.get("help"):
        return item.metadata["help"]
    text = _docstring_args(cls).get(item.name, "").replace("``", "`")
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")  # its first sentence


def _docstring_args(cls: type) -> dict[str, str]:
    """``name: text`` entries of the ``Args:`` section (``a, b: text`` documents both)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    entries: dict[str, str] = {}
    names: list[str] = []
    for line in section.splitlines():
        match = re.match(r"^    (\w+(?:, \w+)*): (.*)$", line)
        if match:
            names = match.group(1).split(", ")
            for name in names:
                entries[name] = match.group(2).strip()
        elif line.startswith("        ") and names:
            for name in names:
                entries[name] += " " + line.strip()
        elif line.strip():
            names = []  # the section ended
    return entries


def describe(hint: Any) -> str:
    """``float``, ``int | None``, ``list | str | None``: the type as users should read it."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(describe(member) for member in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(typing.get_origin(hint), "__name__", None) or getattr(hint, "__name__", "?")


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (a command-line string or a YAML value) as the type ``hint`` asks for.

    Strings are parsed: ``"1e-4"`` for a float (YAML 1.1 reads it as a string), ``"true"`` /
    ``"false"`` for a bool, ``"null"`` / ``"none"`` for an optional field, YAML for lists.
    Raises :class:`ConfigError` naming ``key`` and the expected type.
    """
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if type(None) in members and (value is None or _is_null(value)):
            return None
        # Strings last: "1e-4" for `float | str` is a float, "facades" falls through to str.
        for member in sorted((m for m in members if m is not type(None)), key=lambda m: m is str):
            try:
                return coerce(value, member, key)
            except ConfigError:
                if member is str:
                    raise  # says why (e.g. YAML's unquoted `no`)
        raise ConfigError(f"{key}: expected {describe(hint)}, got {value!r}.")
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint is bool:
        return _as_bool(value, key)
    if hint in (int, float):
        return _as_number(value, hint, key)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # e.g. `split: 2017` in YAML
        if isinstance(value, bool):
            raise ConfigError(
                f"{key}: expected a string, got {value!r} (YAML reads unquoted no / yes / off / "
                'on as booleans: quote the value, e.g. "no").'
            )
        raise ConfigError(f"{key}: expected a string, got {value!r}.")
    if origin is list:
        if isinstance(value, str):
            value = _yaml(value, key)
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{key}: expected a list, e.g. [[0, 0, 0], [255, 0, 0]]; got {value!r}."
            )
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [coerce(item, item_hint, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(hint, type) and isinstance(value, hint):
        return value  # e.g. a Palette object passed from Python
    raise ConfigError(f"{key}: expected {describe(hint)}, got {value!r}.")


def _is_null(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in NULLS


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{key}: expected a bool (true or false), got {value!r}.")


def _as_number(value: Any, kind: type, key: str) -> int | float:
    name = "an int" if kind is int else "a float"
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected {name}, got {value!r}.")
    if isinstance(value, int) or (kind is float and isinstance(value, float)):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected {name}, got {value!r}.")


def _yaml(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{key}: cannot read {text!r} as YAML ({error}).") from None


def typed_tree(
    cls: type,
    tree: Mapping[str, Any],
    name: Callable[[str], str],
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check the keys of a nested ``tree`` against ``cls`` and coerce every value by type.

    ``name`` turns a dotted key into what the user wrote (``--model.ngf`` or ``model.ngf``);
    ``aliases`` maps names from other code bases (``niter``) to a hint saying ours.
    """
    known = options(cls)

    def walk(section: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        hints = typing.get_type_hints(section)
        typed: dict[str, Any] = {}
        for key, value in values.items():
            dotted = f"{prefix}{key}"
            if key not in hints:
                raise ConfigError(unknown_key_message(dotted, known, name, aliases))
            hint = hints[key]
            if not dataclasses.is_dataclass(hint):
                typed[key] = coerce(value, hint, name(dotted))
            elif isinstance(value, Mapping):
                typed[key] = walk(hint, value, f"{dotted}.")
            else:
                raise ConfigError(
                    f"{name(dotted)} is a section: set its keys, e.g. {name(dotted + '.KEY')}."
                )
        return typed

    return walk(cls, tree, "")


def unknown_key_message(
    key: str,
    known: list[Option],
    name: Callable[[str], str],
    aliases: Mapping[str, str] | None = None,
) -> str:
    """``Unknown option --batchsize. Did you mean --batch_size?`` (``name`` spells keys)."""
    leaf = key.rsplit(".", 1)[-1]
    message = f"Unknown option {name(key)}."
    if aliases and (leaf in aliases or key in aliases):
        hint = aliases.get(key) or aliases[leaf]
        return f"{message} That is the official pix2pix / pix2pixHD name: did you mean {hint}?"
    keys = [option.key for option in known]
    # A key of a section given without it: --ngf -> --model.ngf.
    nested = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != key]
    lowered = {k.lower(): k for k in keys} | {k.rsplit(".", 1)[-1].lower(): k for k in keys}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=3, cutoff=0.75)
    candidates = list(dict.fromkeys(nested + [lowered[c] for c in close]))
    if candidates:
        return f"{message} Did you mean {' or '.join(name(c) for c in candidates)}?"
    return f"{message} See --help for the keys."


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Document every leaf of ``cls`` as ``--key`` in ``parser``'s help, one group per section.

    The arguments are parsed as strings (``default=SUPPRESS``: only keys given on the command
    line appear); :func:`coerce` types them, so the YAML and the flags share one path.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options(cls):
        section = option.key.split(".")[0] if "." in option.key else ""
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section}.*" if section else "run")
        default = option.default
        shown = "none" if default is None else default
        text = f"{option.help} (default: {shown})" if option.help else f"(default: {shown})"
        kwargs: dict[str, Any] = {}
        if option.hint is bool:
            kwargs = {"nargs": "?", "const": "true"}  # `--flip` alone means true
        groups[section].add_argument(
            f"--{option.key}", dest=option.key, metavar=describe(option.hint).upper(),
            default=argparse.SUPPRESS, help=text.replace("%", "%%"), **kwargs,
        )  # fmt: skip
