"""Command-line flags derived from config dataclasses (gptlab.settings), and options several verbs share."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal

from gptlab import settings
from gptlab.errors import GptlabError


def add_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, skip: tuple[str, ...] = ()) -> None:
    """A flag for each setting of the config dataclass `cls` (but those in `skip`): `--max-steps VALUE`, a bool as
    `--x/--no-x`, a list as a repeatable flag; the field's docstring and default are its help.

    Flags left out of the command line are absent from the parsed namespace (`given(args, cls)` collects the
    others), so the config's own defaults apply and a YAML file's keys are not overridden by them. Each value is
    typed and checked as it is parsed: a bad one is argparse's one-line usage error.
    """
    for s in settings.settings(cls):
        if s.name in skip:
            continue
        flag = "--" + s.name.replace("_", "-")
        kind = _kind(s.hint)
        doc = s.doc.replace("%", "%%")  # argparse formats help strings with %
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{doc} (default {'on' if s.default else 'off'})".lstrip())
        elif kind is list:
            parser.add_argument(flag, action="append", default=argparse.SUPPRESS, metavar="VALUE",
                                type=_parse(s.name, str), help=f"{doc} (repeatable)".lstrip())
        else:
            choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else "VALUE"
            shown = "" if s.default in (None, "", dataclasses.MISSING) else f" (default {s.default})"
            parser.add_argument(flag, default=argparse.SUPPRESS, metavar=metavar, type=_parse(s.name, s.hint),
                                help=(doc + shown).lstrip())


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` given on the command line (see add_settings), typed."""
    names = {s.name for s in settings.settings(cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def _kind(hint: Any) -> Any:
    """bool, list, or the hint itself without None and Annotated: what shape of flag a setting takes."""
    hint = settings.plain(hint)
    if hint is bool:
        return bool
    if typing.get_origin(hint) in (list, tuple):
        return list
    return hint


def _parse(name: str, hint: Any) -> Any:
    """An argparse `type` that types and checks the text by the setting's hint."""

    def parse(text: str) -> Any:
        try:
            return settings.coerce(name, text, hint)
        except GptlabError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=positive_int,
        help="CPU threads to compute with (default: PyTorch's count, less the cores other programs keep busy, "
             "followed as the load changes)",
    )
