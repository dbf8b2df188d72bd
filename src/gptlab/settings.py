"""Settings: a config dataclass is the one source of its YAML keys, command-line flags, defaults and help.

Each field is a setting: its type hint types the values read from YAML or typed on the command line,
its default is the setting's default, and the docstring under it is its help. A hint may carry checks
(`Annotated[int, AT_LEAST_1]`) that every way of giving the value passes through.

    settings(ServeConfig)                   # [Setting(name, hint, default, doc), ...]
    build(ServeConfig, "serve.yaml", {"port": "8080"})   # defaults < YAML < overrides, typed and checked
    make(ServeConfig, config, {"port": 8080})            # the same from a config object, a YAML file or None

`gptlab.cli.options.add_settings` turns the same list into argparse flags.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from gptlab.errors import GptlabError


@dataclass(frozen=True)
class Check:
    """A condition on a setting's value, named for the error: `Annotated[int, Check("at least 1", ...)]`."""

    want: str
    ok: Callable[[Any], bool]


AT_LEAST_1 = Check("at least 1", lambda v: v >= 1)
POSITIVE = Check("positive", lambda v: v > 0)
NOT_NEGATIVE = Check(">= 0", lambda v: v >= 0)
FRACTION = Check("in [0, 1)", lambda v: 0 <= v < 1)

NOT_A_SETTING = {"setting": False}
"""Field metadata for a config's internal fields, which get no key and no flag."""


@dataclass(frozen=True)
class Setting:
    name: str
    hint: Any
    """The field's type, Annotated checks and all."""
    default: Any
    """dataclasses.MISSING when the setting must be given."""
    doc: str


@dataclass(frozen=True)
class Default:
    """A parent class's setting with another default (and, when its meaning changes with it, another doc)."""

    value: Any
    doc: str | None = None


def redefault(**defaults: Any) -> Callable[[type], type]:
    """Class decorator, applied under @dataclass: give inherited settings new defaults without redeclaring them.

    Each value is the new default, or a `Default` that also rewords the setting's help. The setting keeps its
    place and its type (made optional when the new default is None).
    """

    def apply(cls: type) -> type:
        inherited = typing.get_type_hints(cls.__mro__[1], include_extras=True)
        if "__annotations__" not in cls.__dict__:
            cls.__annotations__ = {}
        annotations = cls.__dict__["__annotations__"]
        docs = dict(cls.__dict__.get("__setting_docs__", {}))
        for name, value in defaults.items():
            new = value if isinstance(value, Default) else Default(value)
            hint = inherited[name]
            annotations[name] = hint | None if new.value is None and not _allows_none(hint) else hint
            setattr(cls, name, new.value)
            if new.doc is not None:
                docs[name] = new.doc
        cls.__setting_docs__ = docs
        return cls

    return apply


def settings(cls: type) -> list[Setting]:
    """The settings of the config dataclass `cls`, in field order; fields with `init=False` or NOT_A_SETTING in
    their metadata are not settings."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = _docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("setting") is False:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rows.append(Setting(f.name, hints[f.name], default, docs.get(f.name, "")))
    return rows


def coerce(name: str, value: Any, hint: Any) -> Any:
    """`value` (from YAML, the command line or Python) as the type `hint` wants, checked; else a one-line error.
    Text is typed as YAML would type it (`1e-3`, `true`, `[a, b]`); ints pass where floats are expected."""
    if value is None and _allows_none(hint):
        return None
    base, checks = _unwrap(_optional_inner(hint))
    value = _typed(name, value, base, typing.get_origin(base))
    if checks:
        _check(name, value, checks)
    return value


def check(config: Any) -> None:
    """Refuse, in one line, the first number in `config` that fails its setting's checks (for configs made in
    Python, whose values did not come through `coerce`)."""
    for setting in settings(type(config)):
        value = getattr(config, setting.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check(setting.name, value, _unwrap(_optional_inner(setting.hint))[1])


def _check(name: str, value: Any, checks: tuple[Check, ...]) -> None:
    """A number must be finite (no comparison refuses NaN), then pass `checks`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise GptlabError(f"{name} must be a finite number, got {value}")
    for c in checks:
        if not c.ok(value):
            raise GptlabError(f"{name} must be {c.want}, got {value}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of settings in a YAML file."""
    import yaml

    from gptlab.files import read_text

    try:
        loaded = yaml.safe_load(read_text(Path(path))) or {}
    except yaml.YAMLError as e:
        raise GptlabError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise GptlabError(f"{path} must hold a mapping of config keys")
    return loaded


def typed(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (keys spelled with - or _) typed by `cls`'s settings; an unknown key is an error."""
    known = {s.name: s for s in settings(cls)}
    out = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            import difflib

            near = difflib.get_close_matches(key, known, n=1)
            raise GptlabError(f"unknown config key {key!r}" + (f" (did you mean {near[0]}?)" if near else ""))
        out[key] = coerce(key, value, known[key].hint)
    return out


def build(cls: type, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
    """A `cls` from its defaults, then the YAML file at `path`, then `overrides` (command line or Python)."""
    values = read_yaml(path) if path is not None else {}
    values.update(overrides or {})
    return cls(**typed(cls, values))


def make(cls: type, source: Any = None, overrides: Mapping[str, Any] | None = None) -> Any:
    """A `cls` from `source` (an instance of it, a YAML file, or None: the defaults) with `overrides` over it: what a
    verb's Python call does with its `config` argument and keyword settings."""
    if isinstance(source, cls):
        return dataclasses.replace(source, **typed(cls, overrides)) if overrides else source
    return build(cls, source, overrides)


def _typed(name: str, value: Any, hint: Any, origin: Any) -> Any:
    if isinstance(value, str) and hint is not str and origin is not Literal:
        import yaml

        try:
            value = yaml.safe_load(value)  # command-line text, typed as YAML would type it: 1e-3, true, [a, b]
        except yaml.YAMLError:
            pass
        if isinstance(value, str) and hint in (int, float):
            try:
                value = hint(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
            except ValueError:
                pass
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise GptlabError(f"{name} must be one of {', '.join(map(str, typing.get_args(hint)))}, got {value!r}")
        return value
    if origin in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return [str(v) for v in items]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float, Path)) and not isinstance(value, bool):
        return str(value)
    if origin is dict and isinstance(value, dict):
        return value
    if hint in (int, bool, str, dict) and type(value) is hint:
        return value
    raise GptlabError(f"{name} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def plain(hint: Any) -> Any:
    """The type a hint asks for, without its checks and without None: `int` for `Annotated[int, ...] | None`."""
    return _unwrap(_optional_inner(hint))[0]


def _unwrap(hint: Any) -> tuple[Any, tuple[Check, ...]]:
    """(the type, its checks) of a hint that may be Annotated."""
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, tuple(e for e in extras if isinstance(e, Check))
    return hint, ()


def _optional_inner(hint: Any) -> Any:
    """`X` of `X | None` (an Annotated X keeps its checks); other hints as they are."""
    if typing.get_origin(hint) is Annotated:
        base, checks = _unwrap(hint)
        return Annotated[(_optional_inner(base), *checks)] if checks else _optional_inner(base)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _allows_none(hint: Any) -> bool:
    hint = _unwrap(hint)[0]
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _docs(cls: type) -> dict[str, str]:
    """Field docstrings of `cls` and its dataclass bases (a subclass's own win), read from the source, so the help
    and the code say the same thing."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_docs(klass))
            docs.update(klass.__dict__.get("__setting_docs__", {}))
    return docs


@functools.cache
def _own_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (e.g. a class made at run time)
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = " ".join(str(following.value.value).split())  # type: ignore[union-attr]
    return docs
