"""Command-line flags derived from config dataclasses (gptlab.settings), and options several verbs share."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any, Literal

from gptlab import settings
from gptlab.errors import GptlabError


def add_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, skip: tuple[str, ...] = ()) -> None:
    """A flag for each setting of the config dataclass `cls` (but those in `skip`): `--max-steps VALUE`, a bool as
    `--x/--no-x`, a list as `--x a b` or `--x a --x b`; the field's docstring and default are its help, and a setting
    without a default is a required flag. A field's metadata may give its `metavar`, its `nargs` (a count, for a
    pair such as `--flops C_MIN C_MAX`), a `parse` function for its text, and its `flag` where the flag is not the
setting's name (`--task` for `tasks`).

    Flags left out of the command line are absent from the parsed namespace (`given(args, cls)` collects the
    others), so the config's own defaults apply and a YAML file's keys are not overridden by them. Each value is
    typed and checked as it is parsed: a bad one is argparse's one-line usage error.
    """
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for s in settings.settings(cls):
        if s.name in skip:
            continue
        meta, kind = metadata[s.name], settings.plain(s.hint)
        doc = s.doc.replace("%", "%%")  # argparse formats help strings with %
        options: dict[str, Any] = {"metavar": meta.get("metavar", "VALUE")}
        if s.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = argparse.SUPPRESS  # left out: the config's default applies
        if kind is bool:
            options.update(action=argparse.BooleanOptionalAction, metavar=None)
            doc += f" (default {'on' if s.default else 'off'})"
        elif typing.get_origin(kind) in (list, tuple, dict):
            item = typing.get_args(kind)[0] if typing.get_origin(kind) in (list, tuple) else str
            nargs = meta.get("nargs", "+")
            options.update(nargs=nargs, type=_parse(s.name, item), action="extend" if nargs == "+" else "store")
        else:
            choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
            if choices:
                options["metavar"] = "{" + ",".join(map(str, choices)) + "}"
            options["type"] = _parse(s.name, s.hint, meta.get("parse"))
            if s.default not in (None, "", dataclasses.MISSING):
                doc += f" (default {s.default})"
        flag = "--" + meta.get("flag", s.name).replace("_", "-")
        parser.add_argument(flag, dest=s.name, help=doc.lstrip() or None, **options)


class DeferredFlags(argparse.ArgumentParser):
    """A sub-command's parser that adds the flags of its `config` when it is used, so that building the whole
    command (`gptlab --help`, any other verb) does not read every config's settings. Give it as the
    `parser_class` of `add_subparsers`, and each `add_parser` its `config`."""

    def __init__(self, *args: Any, config: type | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._config = config

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._config is not None:
            add_settings(self, self._config)
            self._config = None
        return super().parse_known_args(args, namespace)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` given on the command line (see add_settings), typed."""
    names = {s.name for s in settings.settings(cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def _parse(name: str, hint: Any, parse: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """An argparse `type` that types and checks the text by the setting's hint, or by its own `parse`."""

    def typed(text: str) -> Any:
        try:
            return parse(text) if parse is not None else settings.coerce(name, text, hint)
        except (GptlabError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return typed
