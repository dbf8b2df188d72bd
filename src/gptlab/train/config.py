"""Training configuration: one YAML recipe, every key overridable with `--key value` on the command line.

Model fields (n_layer, d_model, dropout, attention, ...) sit beside the training fields and override
the chosen preset, so `--model gpt3-small --n-layer 4` is a four-layer GPT-3 small.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from gptlab import recipes, settings
from gptlab.errors import GptlabError
from gptlab.model import GPTConfig, preset
from gptlab.settings import AT_LEAST_1, FRACTION, NOT_A_SETTING, NOT_NEGATIVE, POSITIVE, Check


UNLIMITED_STEPS = 10**12
"""max_steps of a run that a time budget ends."""


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)
    """Text files, folders of them, JSONL files with a `text` field, or token-shard directories."""
    tokenizer: str | None = None
    """`byte`, `char`, `bpe:N` (train an N-token BPE on the training split), or a tokenizer/checkpoint directory;
    default: the token shards' own tokenizer, else `byte`."""
    tokenizer_sample_mb: Annotated[float, POSITIVE] | None = None
    """Fit `bpe:N` to at most this many MB of training documents, spread over the corpus; default all."""
    model: str = "mini"
    """A model preset; model fields given beside it override the preset's."""
    out: str = "runs/gptlab"
    seq_len: int | None = None
    """Training window; defaults to the model's context (and sets it when shorter)."""
    batch_size: Annotated[int, AT_LEAST_1] | None = None
    """Sequences per optimizer step, over all processes; defaults to the preset's paper batch, else 12."""
    micro_batch_size: Annotated[int, AT_LEAST_1] | None = None
    """Sequences per forward pass; the rest is gradient accumulation. Defaults to batch_size."""
    max_steps: Annotated[int, AT_LEAST_1] = 1000
    """Optimizer steps; with max_minutes and no max_steps given, the time budget alone ends the run."""
    max_minutes: Annotated[float, POSITIVE] | None = None
    """Wall-clock budget: warmup and decay are laid out over this time, not over steps, and the run ends when it is
    spent (or at max_steps), so a slow or busy machine still finishes its schedule on time. Resumes continue the
    clock where the run stopped; the steps reached depend on the machine, so such runs are not bit-exact."""
    lr: Annotated[float, POSITIVE] | None = None
    """Peak learning rate; defaults to the preset's paper value, else 1e-3."""
    lr_schedule: Literal["cosine", "linear"] = "cosine"
    """Decay after warmup: cosine (GPT-2/3) or linear (GPT-1's fine-tuning)."""
    min_lr_ratio: Annotated[float, Check("in [0, 1]", lambda v: 0 <= v <= 1)] = 0.1
    """The decay ends at this fraction of the peak (GPT-3: 10%)."""
    warmup_steps: Annotated[int, NOT_NEGATIVE] = 100
    lr_decay_steps: Annotated[int, AT_LEAST_1] | None = None
    """Steps of cosine decay after which the rate stays at the floor; defaults to max_steps."""
    weight_decay: Annotated[float, NOT_NEGATIVE] = 0.1
    beta1: Annotated[float, FRACTION] = 0.9
    beta2: Annotated[float, FRACTION] = 0.95
    eps: Annotated[float, POSITIVE] = 1e-8
    grad_clip: Annotated[float, POSITIVE] = 1.0
    batch_ramp_steps: Annotated[int, NOT_NEGATIVE] = 0
    """Grow the batch linearly from batch_ramp_start to batch_size over this many steps (GPT-3)."""
    batch_ramp_start: Annotated[int, AT_LEAST_1] | None = None
    """The ramp's first batch size; default one micro-batch."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast; `auto` uses it on GPUs that support it and on CPUs with native bf16 (AVX-512 BF16, AMX), fp32 elsewhere."""
    compile: bool = False
    activation_checkpointing: bool = False
    val_fraction: Annotated[float, FRACTION] = 0.1
    eval_every: Annotated[int, AT_LEAST_1] = 250
    eval_windows: Annotated[int, AT_LEAST_1] = 200
    """Validation windows scored at each evaluation (a fixed, evenly spread set)."""
    log_every: Annotated[int, AT_LEAST_1] = 10
    save_every: Annotated[int, AT_LEAST_1] = 500
    keep_checkpoints: Annotated[int, AT_LEAST_1] = 3
    sample_tokens: Annotated[int, NOT_NEGATIVE] = 200
    """Tokens sampled at each evaluation to show progress (0 = none)."""
    sample_prompt: str = ""
    seed: Annotated[int, NOT_NEGATIVE, Check("below 2**63", lambda v: v < 2**63)] = 1337
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
    threads: Annotated[int, AT_LEAST_1] | None = None
    """CPU threads to compute with; by default PyTorch's count less the cores other programs keep busy, followed
    as the load changes (gptlab.threads)."""
    model_overrides: dict[str, Any] = field(default_factory=dict, metadata=NOT_A_SETTING)
    """Model fields over the preset's (given in YAML or on the command line beside the settings above)."""
    given: frozenset[str] | None = field(default=None, compare=False, repr=False, metadata=NOT_A_SETTING)
    """The keys set explicitly (build_config: the YAML file and the command line); on resume every other key keeps
    the run's own value. None, as for a config made in Python: every key counts as given."""

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        settings.check(self)
        unknown = sorted(set(self.model_overrides) - _MODEL_FIELDS)
        if unknown:
            raise GptlabError(f"{self.verb} config: unknown model field(s) {', '.join(unknown)}")
        if self.model is not None:
            preset(self.model, **self.model_overrides)  # the preset's name and the model fields, checked now

    verb: typing.ClassVar[str] = "train"
    """The command whose options these are."""

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


def build_config(recipe: Path | str | None, overrides: dict[str, Any], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Defaults, then the recipe (a YAML file, or a packaged recipe's name), then overrides (the command line's, or
    Python's); model fields go to model_overrides, written plainly (`n_layer`) or as `model.n_layer`.

    `cls` is TrainConfig or a variant of it with more settings and other defaults (fine-tuning's).
    """
    values = settings.read_yaml(recipes.find(recipe)) if recipe is not None else {}
    values.update(overrides)
    model_overrides = dict(values.pop("model_overrides", None) or {})
    own = {s.name for s in settings.settings(cls)}
    mine: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key.startswith("model."):
            key = key[len("model.") :]
            if key not in _MODEL_FIELDS:
                raise GptlabError(f"unknown model field {key!r}")
        if key in own or key not in _MODEL_FIELDS:
            mine[key] = value
        else:
            model_overrides[key] = settings.coerce(key, value, list[str] if key == "attention" else _MODEL_HINTS[key])
    config = settings.typed(cls, mine)
    given = frozenset(config) | ({"model_overrides"} if model_overrides else set())
    step_limited = cls.__dataclass_fields__["max_steps"].default is not None  # fine-tuning counts epochs instead
    if config.get("max_minutes") is not None and "max_steps" not in config and step_limited:
        config["max_steps"] = UNLIMITED_STEPS
    return cls(**config, model_overrides=model_overrides, given=given)
