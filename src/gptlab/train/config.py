"""Training configuration: one YAML file, every key overridable with `--key value` on the command line.

Model fields (n_layer, d_model, dropout, attention, ...) sit beside the training fields and override
the chosen preset, so `--model gpt3-small --n-layer 4` is a four-layer GPT-3 small.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gptlab.errors import GptlabError
from gptlab.model import GPTConfig, preset


UNLIMITED_STEPS = 10**12
"""max_steps of a run that a time budget ends."""


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)
    """Text files, folders of them, JSONL files with a `text` field, or token-shard directories."""
    tokenizer: str | None = None
    """`byte`, `char`, `bpe:N` (train an N-token BPE on the training split), or a tokenizer/checkpoint directory;
    default: the token shards' own tokenizer, else `byte`."""
    tokenizer_sample_mb: float | None = None
    """Fit `bpe:N` to at most this many MB of training documents, spread over the corpus; default all."""
    model: str = "mini"
    """A model preset; model fields given beside it override the preset's."""
    out: str = "runs/gptlab"
    seq_len: int | None = None
    """Training window; defaults to the model's context (and sets it when shorter)."""
    batch_size: int | None = None
    """Sequences per optimizer step, over all processes; defaults to the preset's paper batch, else 12."""
    micro_batch_size: int | None = None
    """Sequences per forward pass; the rest is gradient accumulation. Defaults to batch_size."""
    max_steps: int = 1000
    """Optimizer steps; with max_minutes and no max_steps given, the time budget alone ends the run."""
    max_minutes: float | None = None
    """Wall-clock budget: warmup and decay are laid out over this time, not over steps, and the run ends when it is
    spent (or at max_steps), so a slow or busy machine still finishes its schedule on time. Resumes continue the
    clock where the run stopped; the steps reached depend on the machine, so such runs are not bit-exact."""
    lr: float | None = None
    """Peak learning rate; defaults to the preset's paper value, else 1e-3."""
    lr_schedule: Literal["cosine", "linear"] = "cosine"
    """Decay after warmup: cosine (GPT-2/3) or linear (GPT-1's fine-tuning)."""
    min_lr_ratio: float = 0.1
    """The decay ends at this fraction of the peak (GPT-3: 10%)."""
    warmup_steps: int = 100
    lr_decay_steps: int | None = None
    """Steps of cosine decay after which the rate stays at the floor; defaults to max_steps."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    batch_ramp_steps: int = 0
    """Grow the batch linearly from batch_ramp_start to batch_size over this many steps (GPT-3)."""
    batch_ramp_start: int | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast; `auto` uses it on GPUs that support it and on CPUs with native bf16 (AVX-512 BF16, AMX), fp32 elsewhere."""
    compile: bool = False
    activation_checkpointing: bool = False
    val_fraction: float = 0.1
    eval_every: int = 250
    eval_windows: int = 200
    """Validation windows scored at each evaluation (a fixed, evenly spread set)."""
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 3
    sample_tokens: int = 200
    """Tokens sampled at each evaluation to show progress (0 = none)."""
    sample_prompt: str = ""
    seed: int = 1337
    device: str = "auto"
    distributed: Literal["ddp", "fsdp"] = "ddp"
    checkpoint_format: Literal["auto", "sharded", "full"] = "auto"
    """sharded: each process writes its own part of the weights and optimizer state (torch.distributed.checkpoint) and
    none gathers them; full: rank 0 gathers them into one model.safetensors; auto: sharded under FSDP with several
    processes. final/ is always a full checkpoint, and a run resumes from either at any process count."""
    on_nan: Literal["stop", "skip"] = "stop"
    tensorboard: bool = False
    resume: bool = False
    progress: bool = True
    threads: int | None = None
    """CPU threads to compute with; by default PyTorch's count less the cores other programs keep busy, followed
    as the load changes (gptlab.threads)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] | None = field(default=None, compare=False, repr=False)
    """The keys set explicitly (build_config: the YAML file and the command line); on resume every other key keeps
    the run's own value. None, as for a config made in Python: every key counts as given."""

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        for name, value in self._numbers().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise GptlabError(f"{self.verb} config: {name} must be a finite number, got {value}")
        self._check(("batch_size", "micro_batch_size", "max_steps", "lr_decay_steps", "batch_ramp_start", "eval_every",
                     "eval_windows", "log_every", "save_every", "keep_checkpoints", "threads"), "at least 1", lambda v: v >= 1)
        self._check(("warmup_steps", "batch_ramp_steps", "sample_tokens", "seed", "weight_decay"), ">= 0", lambda v: v >= 0)
        self._check(("lr", "eps", "grad_clip", "max_minutes", "tokenizer_sample_mb"), "positive", lambda v: v > 0)
        self._check(("val_fraction", "beta1", "beta2"), "in [0, 1)", lambda v: 0 <= v < 1)
        self._check(("min_lr_ratio",), "in [0, 1]", lambda v: 0 <= v <= 1)
        self._check(("seed",), "below 2**63", lambda v: v < 2**63)  # torch's and numpy's generators take 64 bits
        unknown = sorted(set(self.model_overrides) - _MODEL_FIELDS)
        if unknown:
            raise GptlabError(f"{self.verb} config: unknown model field(s) {', '.join(unknown)}")
        if self.model is not None:
            preset(self.model, **self.model_overrides)  # the preset's name and the model fields, checked now

    verb: typing.ClassVar[str] = "train"
    """The command whose options these are."""

    def _numbers(self) -> dict[str, int | float]:
        """The numeric settings that are set (booleans are not numbers here)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def _check(self, names: tuple[str, ...], want: str, ok: Callable[[int | float], bool]) -> None:
        """Refuse, in one line, the first of the settings `names` that is set and not `ok`."""
        numbers = self._numbers()
        for name in names:
            if name in numbers and not ok(numbers[name]):
                raise GptlabError(f"{self.verb} config: {name} must be {want}, got {numbers[name]}")

    def inputs(self) -> list[str]:
        """The data paths the run reads, whose fingerprint a resume checks (train.fingerprint)."""
        return list(self.data)

    def resumed_from(self, saved: dict[str, Any]) -> TrainConfig:
        """These settings over those of the run being resumed (`saved`, its to_dict()): what is not given keeps the
        run's value, so a resume trains toward the run's own max_steps, on its data, with its recipe."""
        if self.given is None:
            return self
        names = {f.name for f in dataclasses.fields(self)} - {"given", "out", "resume"}
        return dataclasses.replace(self, **{k: v for k, v in saved.items() if k in names and k not in self.given})

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        del values["given"]
        return values


_MODEL_FIELDS = {f.name for f in dataclasses.fields(GPTConfig)}
_MODEL_HINTS = typing.get_type_hints(GPTConfig)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check a YAML/CLI value against the field's type; ints pass where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if isinstance(value, str) and hint is not str and origin is not Literal:
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
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if hint in (int, bool, str, dict) and type(value) is hint:
        return value
    raise GptlabError(f"{name} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def build_config(yaml_path: Path | None, overrides: dict[str, Any], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Defaults, then the YAML file, then command-line overrides; model fields go to model_overrides.

    `cls` is TrainConfig or a variant of it with more fields and other defaults (fine-tuning's).
    """
    fields = {f.name for f in dataclasses.fields(cls) if f.name not in ("model_overrides", "given")}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    if yaml_path is not None:
        from gptlab.files import read_text

        try:
            loaded = yaml.safe_load(read_text(yaml_path)) or {}
        except yaml.YAMLError as e:
            raise GptlabError(f"{yaml_path} is not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise GptlabError(f"{yaml_path} must hold a mapping of config keys")
        values.update(loaded)
    values.update(overrides)
    model_overrides = dict(values.pop("model_overrides", None) or {})
    config: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key.startswith("model."):
            key = key[len("model.") :]
            if key not in _MODEL_FIELDS:
                raise GptlabError(f"unknown model field {key!r}")
        if key in fields:
            config[key] = _coerce(key, value, hints[key])
        elif key in _MODEL_FIELDS:
            model_overrides[key] = _coerce(key, value, list[str] if key == "attention" else _MODEL_HINTS[key])
        else:
            raise GptlabError(f"unknown config key {key!r}; see `gptlab {cls.verb} --help`")
    given = frozenset(config) | ({"model_overrides"} if model_overrides else set())
    step_limited = cls.__dataclass_fields__["max_steps"].default is not None  # fine-tuning counts epochs instead
    if config.get("max_minutes") is not None and "max_steps" not in config and step_limited:
        config["max_steps"] = UNLIMITED_STEPS
    return cls(**config, model_overrides=model_overrides, given=given)


def field_help(cls: type[TrainConfig] = TrainConfig) -> list[tuple[str, Any, str]]:
    """(name, default, description) of every field of `cls`, for --help."""
    docs = {name: doc for klass in reversed(cls.__mro__) if dataclasses.is_dataclass(klass) for name, doc in _docs(klass).items()}
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in ("model_overrides", "given"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rows.append((f.name, default, docs.get(f.name, "")))
    return rows


def _docs(cls: type) -> dict[str, str]:
    """Field docstrings, read from the class's source so --help and the code say the same thing."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = " ".join(str(following.value.value).split())  # type: ignore[union-attr]
    return docs
