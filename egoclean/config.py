"""Typed settings: each one defined once, with its default, its help and its validation.

A settings class is a frozen dataclass whose fields are made with `setting(...)`. From that one definition
come the command-line options (`add_options`), the object built from parsed arguments (`from_args`) and
the checks (`validate`), so a default or a help text is never written twice.

    @dataclass(frozen=True)
    class EncodeSettings:
        stride_s: float = setting(1.0, "seconds between window starts", low=0, low_open=True)

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_options(parser, EncodeSettings)            # --stride-s S   seconds between ... (default: 1.0)
    settings = validate(from_args(EncodeSettings, parser.parse_args()))

Bad values raise SettingError naming the option (`--stride-s nan: must be a finite number`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from egoclean.errors import SettingError

T = TypeVar("T")

_META = "egoclean"


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What `setting` records about a field; read back with `spec_of`."""

    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None  # smallest allowed value (or, with low_open, the bound it must exceed)
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    metavar: str | None = None
    flag: str | None = None  # the option's name when it is not --field-name (e.g. --hfov for hfov_deg)
    none_word: str | None = None  # on the command line, this word means None (e.g. "auto")
    cli: bool = True  # False: a library-only setting, not a command-line option
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None


def setting(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    metavar: str | None = None,
    flag: str | None = None,
    none_word: str | None = None,
    cli: bool = True,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field with its help and validation attached. Mutable defaults (lists) are copied."""
    spec = SettingSpec(
        help=help,
        choices=tuple(choices) if choices is not None else None,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        metavar=metavar,
        flag=flag,
        none_word=none_word,
        cli=cli,
        check=check,
    )
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={_META: spec})
    return dataclasses.field(default=default, metadata={_META: spec})


def spec_of(field: dataclasses.Field) -> SettingSpec | None:
    return field.metadata.get(_META)


def option_name(field_name: str, spec: SettingSpec | None = None) -> str:
    """stride_s -> --stride-s (or the setting's own flag)"""
    if spec is not None and spec.flag:
        return spec.flag
    return "--" + field_name.replace("_", "-")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type a value is parsed as, whether None is allowed) for int, float | None, list[int], ..."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return annotation, False


def _bounds_text(spec: SettingSpec) -> str | None:
    parts = []
    if spec.low is not None:
        parts.append(f"{'>' if spec.low_open else '>='} {spec.low:g}")
    if spec.high is not None:
        parts.append(f"{'<' if spec.high_open else '<='} {spec.high:g}")
    return " and ".join(parts) or None


def check_value(name: str, value: Any, annotation: Any, spec: SettingSpec) -> None:
    """Raise SettingError("--name VALUE: what is wrong") if `value` breaks the setting's rules."""
    base, optional = _base_type(annotation)
    flag = option_name(name, spec)
    shown = value if isinstance(value, (str, Path)) else repr(value)
    label = f"{flag} {shown}"
    if value is None:
        if optional:
            return
        raise SettingError(f"{flag}: a value is required")
    if base is float and isinstance(value, (int, float)) and not math.isfinite(value):
        raise SettingError(f"{label}: must be a finite number")
    if spec.choices is not None and value not in spec.choices:
        raise SettingError(f"{label}: must be one of {', '.join(map(str, spec.choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        too_high = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
        if too_low or too_high:
            raise SettingError(f"{label}: must be {_bounds_text(spec)}")
    if spec.check is not None and (problem := spec.check(value)):
        raise SettingError(f"{label}: {problem}")


def validate(settings: T) -> T:
    """Check every field of a settings object (nested settings objects too); return it unchanged."""
    hints = _field_types(type(settings))
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value)
        elif (spec := spec_of(field)) is not None:
            check_value(field.name, value, hints[field.name], spec)
    # Rules that tie two settings together: a class may name them in `conflicts()`, one line each.
    conflicts = getattr(settings, "conflicts", None)
    if callable(conflicts) and (problems := conflicts()):
        raise SettingError(problems[0])
    return settings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, unless it is None, a flag, or already in the help text; keeps the
    description's line breaks (examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # The description's own layout (paragraphs, "  name   text" lists, examples) rewrapped to the
        # terminal: a line that continues the one above (same paragraph, or indented to its text column)
        # is joined to it, then each is wrapped with its hanging indent.
        return "\n".join(
            textwrap.fill(
                line,
                width,
                initial_indent=indent,
                subsequent_indent=indent + " " * hang,
                break_on_hyphens=False,
            )
            if line
            else ""
            for line, hang in _logical_lines(text)
        )

    def _split_lines(self, text: str, width: int) -> list[str]:
        # argparse's own wrap breaks at hyphens, splitting an option name ("--max-" / "fetch-concurrency")
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "default" in (action.help or "") or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _logical_lines(text: str) -> list[tuple[str, int]]:
    """(line, hanging indent) of `text` with continuation lines joined. A prose line at column 0 continues
    a column-0 line that does not end in ':'. An indented line with a gap of two or more spaces is a list
    item ("  auto   text", "  command   # comment"); a line indented to the text after the gap continues
    it."""
    out: list[tuple[str, int, bool]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        lead = len(line) - len(line.lstrip())
        if out and line and out[-1][0]:
            previous, hang, is_item = out[-1]
            prose = lead == 0 and hang == 0 and not previous.endswith(":")
            if prose or (is_item and lead == hang):
                out[-1] = (previous + " " + line.strip(), hang, is_item)
                continue
        item = re.match(r"\s+\S.*?\s{2,}(?=\S)", line)
        out.append((line, len(item.group(0)) if item else lead, item is not None))
    return [(line, hang) for line, hang, _ in out]


def _parser_for(base: Any, none_word: str | None = None) -> Callable[[str], Any]:
    if base is Path:
        return Path
    if base in (int, float):

        def parse(text: str) -> Any:
            if none_word is not None and text == none_word:
                return None
            try:
                return base(text)
            except ValueError:
                kind = "an integer" if base is int else "a number"
                raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None

        parse.__name__ = base.__name__
        return parse
    return str


class _StoreOnce(argparse.Action):
    """Store an option's value, refusing it a second time: `--stride-s 1 ... --stride-s 2` is a typo or
    a pasted command line, and argparse's last-one-wins would silently run with one of the two."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen: set[str] = namespace.__dict__.setdefault("_options_given", set())
        if self.dest in seen:
            raise argparse.ArgumentError(self, f"given twice (the second time as {values!r}); give it once")
        seen.add(self.dest)
        setattr(namespace, self.dest, values)


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
) -> None:
    """One option per CLI field of `cls` (`stride_s` -> `--stride-s`), default and help from the field.

    A bool field that defaults to False becomes a plain flag (--force), one that defaults to True an on/off
    pair (--thing / --no-thing).
    """
    hints = _field_types(cls)
    for field in dataclasses.fields(cls):
        spec = spec_of(field)
        if (
            spec is None
            or not spec.cli
            or field.name in skip
            or (only is not None and field.name not in only)
        ):
            continue
        default = field.default
        if default is dataclasses.MISSING and callable(field.default_factory):
            default = field.default_factory()
        base, _ = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {"dest": field.name, "help": spec.help, "default": default}
        if base is bool:
            kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            kwargs |= {"type": _parser_for(item), "nargs": "+", "action": _StoreOnce}
        else:
            kwargs |= {"type": _parser_for(base, spec.none_word), "action": _StoreOnce}
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
        if spec.metavar or (spec.flag and base is not bool and "choices" not in kwargs):
            kwargs["metavar"] = spec.metavar or spec.flag.lstrip("-").replace("-", "_").upper()  # type: ignore[union-attr]
        parser.add_argument(option_name(field.name, spec), **kwargs)


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build `cls` from parsed arguments: fields present in `args` (or overrides), defaults for the rest."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return cls(**(values | overrides))
