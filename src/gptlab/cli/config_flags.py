"""Flags from a config dataclass (gptlab.settings) for the verbs whose list options take all their values after
one flag, as users have always typed them: `gptlab data mix --input a=x b=y`, `gptlab scale sweep --sizes 7e3 2e4`.

`cli.options.add_settings` makes a list setting a repeatable flag of one value each (`--data a --data b`); these
verbs keep `nargs`, a setting without a default is a required flag, and a field's metadata may give its
`metavar`, its `nargs` (a count, for a pair such as `--flops C_MIN C_MAX`) and a `parse` function for its text.
The help is the field's docstring, as everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any, Literal

from gptlab import settings
from gptlab.errors import GptlabError


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                     skip: tuple[str, ...] = ()) -> None:
    """A flag for each setting of `cls` but those in `skip`."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for s in settings.settings(cls):
        if s.name in skip:
            continue
        meta, kind = metadata[s.name], settings.plain(s.hint)
        options: dict[str, Any] = {"help": s.doc.replace("%", "%%") or None, "metavar": meta.get("metavar")}
        if s.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = argparse.SUPPRESS  # left out: the config's default applies
        if kind is bool:
            options.update(action=argparse.BooleanOptionalAction, metavar=None)
        elif typing.get_origin(kind) in (list, tuple, dict):
            item = typing.get_args(kind)[0] if typing.get_origin(kind) is not dict else str
            options.update(nargs=meta.get("nargs", "+"), type=_typed(s.name, item, None))
            if options["nargs"] == "+":
                options["action"] = "extend"  # `--input a b` and `--input a --input b` alike
        else:
            options["type"] = _typed(s.name, s.hint, meta.get("parse"))
            if typing.get_origin(kind) is Literal:
                options.update(choices=typing.get_args(kind), type=None)
        parser.add_argument("--" + s.name.replace("_", "-"), **{k: v for k, v in options.items() if v is not None})


class DeferredFlags(argparse.ArgumentParser):
    """A sub-command's parser that adds the flags of its `config` when it is used, so that building the whole
    command (`gptlab --help`, any other verb) does not read every config's settings. Give it as the
    `parser_class` of `add_subparsers`, and each `add_parser` its `config`."""

    def __init__(self, *args: Any, config: type | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._config = config

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._config is not None:
            add_config_flags(self, self._config)
            self._config = None
        return super().parse_known_args(args, namespace)


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` given on the command line (see add_config_flags)."""
    names = {s.name for s in settings.settings(cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def _typed(name: str, hint: Any, parse: Callable[[str], Any] | None) -> Callable[[str], Any]:
    """An argparse `type` that types the text by the setting's hint, or by its own `parse`; a bad value is
    argparse's one-line usage error."""

    def typed(text: str) -> Any:
        try:
            return parse(text) if parse is not None else settings.coerce(name, text, hint)
        except (GptlabError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return typed
