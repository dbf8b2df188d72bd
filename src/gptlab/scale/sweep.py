"""A family of models of increasing size, trained on the same data with the same recipe.

Each run is an ordinary `gptlab train` run in DIR/runs/NAME (NAME = L<layers>-d<d_model>-b<batch>-s<steps>):
GPT-3's optimiser with the lr and batch of the rules in `shapes`, warmup over the first 5% of steps
then cosine to 10%, one evaluation at the end.
DIR/sweep.json keeps the recipe, the data's token counts and the runs, so rerunning the command skips
the finished runs (those with a final/ checkpoint), resumes an interrupted one from its last checkpoint,
and refuses a different recipe. The runs are independent: one after another in this process, or side
by side as tasks on a Ray cluster.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gptlab import atomic
from gptlab.cluster import BACKENDS, check_backend, connect_ray
from gptlab.errors import GptlabError
from gptlab.files import read_json_object
from gptlab.scale.shapes import BASE_PRESET, SMALLEST, Shape, batch_tokens, learning_rate, rule_shapes, shape_for_params

WARMUP = 0.05
"""Share of a run's steps spent warming up."""
SAVES_PER_RUN = 10
"""Checkpoints a run writes, so that an interrupted one loses a tenth of its work at most."""


@dataclass(frozen=True)
class Recipe:
    """What every run of a sweep shares; a sweep directory holds one recipe."""

    data: tuple[str, ...] = field(metadata={"metavar": "PATH"})
    """text files, folders, JSONL or token shards, as for `gptlab train`"""
    tokenizer: str = "byte"
    """byte, char, bpe:N (fitted once, shared) or a directory (default byte)"""
    seq_len: int = 128
    """training context (default 128)"""
    batch_size: int | None = None
    """sequences per step (default: 0.2920·C^0.3271 tokens' worth, by the run's compute; see shapes)"""
    lr_scale: float = 1.0
    """multiplies the learning-rate rule (default 1)"""
    eval_windows: int = 200
    """validation windows scored at the end (default 200)"""
    val_fraction: float = 0.1
    """held-out share of the data (default 0.1)"""
    seed: int = 1337

    def __post_init__(self) -> None:
        if not self.data:
            raise GptlabError("no training data: give the data paths (files, folders, JSONL or token shards)")
        for name in ("seq_len", "batch_size", "eval_windows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise GptlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr_scale > 0:
            raise GptlabError(f"lr_scale must be positive, got {self.lr_scale}")
        if not 0 < self.val_fraction < 1:
            raise GptlabError(
                f"a sweep is judged on validation loss: val_fraction must be above 0 and below 1, got {self.val_fraction}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "data": list(self.data)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return cls(**{**data, "data": tuple(data["data"])})


@dataclass(frozen=True, kw_only=True)
class SweepConfig(Recipe):
    """A whole sweep: the recipe its runs share, which runs (by size or by compute budget), where, and how they
    run. `gptlab scale sweep`'s options, and `run_sweep`'s argument."""

    sizes: tuple[float, ...] | None = field(default=None, metadata={"metavar": "N"})
    """non-embedding parameter counts (or give flops)"""
    flops: tuple[float, float] | None = field(default=None, metadata={"metavar": ("C_MIN", "C_MAX"), "nargs": 2})
    """compute budgets from C_MIN to C_MAX FLOPs, evenly spaced in log; each trains the largest shape whose tokens
    fit it"""
    points: int = 5
    """budgets between C_MIN and C_MAX (default 5)"""
    tokens_per_param: tuple[float, ...] = field(default=(20.0,), metadata={"metavar": "R"})
    """training tokens per parameter; several give several budgets per size and fit L(N, D) (default 20, about
    compute-optimal)"""
    out: str
    """sweep directory (rerun the command to continue)"""
    executor: Literal[BACKENDS] = "local"
    """runs one after another here, or side by side on Ray (a cluster at RAY_ADDRESS, else a local one; paths must
    be on storage every node sees)"""
    threads: int | None = None
    """CPU threads per run; on Ray the CPUs each run reserves (default 1 there)"""
    device: str = "auto"
    """auto, cpu, cuda, ... (on Ray, cuda reserves a GPU per run)"""
    progress: bool = True
    """progress bars"""

    def recipe(self) -> Recipe:
        fields = (f.name for f in dataclasses.fields(Recipe))
        return Recipe(**{name: getattr(self, name) for name in fields if name != "data"},
                      data=tuple(os.path.abspath(p) for p in self.data))

    def execution(self) -> Execution:
        return Execution(self.executor, self.threads, self.device, self.progress)

    def runs(self) -> list[RunSpec]:
        if (self.sizes is None) == (self.flops is None):
            raise GptlabError("give the runs' sizes or their compute budgets (flops), one of the two")
        recipe, ratios = self.recipe(), list(self.tokens_per_param)
        if self.sizes is not None:
            return runs_for_sizes(recipe, list(self.sizes), ratios)
        if len(self.flops) != 2:
            raise GptlabError(f"flops takes two budgets, C_MIN and C_MAX, got {len(self.flops)}")
        return runs_for_budgets(recipe, *self.flops, self.points, ratios)


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: every run's measurements and the laws fitted to them (scaling.json's content)."""

    summary: dict[str, Any]
    out: Path

    @property
    def scaling_file(self) -> Path:
        from gptlab.scale.report import SCALING_FILE

        return self.out / SCALING_FILE

    @property
    def plot_file(self) -> Path:
        from gptlab.scale.report import PLOT_FILE

        return self.out / PLOT_FILE

    def report(self) -> str:
        """The runs and laws as a table, where they are written, and the budget to plan next."""
        from gptlab.scale import report

        largest = max(r["flops"] for r in self.summary["runs"])
        return (f"{report.table(self.summary)}\nresults: {self.scaling_file}\nplot:    {self.plot_file}\n"
                f"next:    gptlab scale plan {self.out} --flops {report.NEXT * largest:.2g}")


def run_sweep(config: SweepConfig | None = None, **settings: Any) -> SweepResult:
    """Train the sweep's runs not yet finished in `config.out` and fit the scaling laws to all of them; `settings`
    are SweepConfig's fields, over `config` when it is given."""
    config = SweepConfig(**settings) if config is None else dataclasses.replace(config, **settings)
    summary = sweep(config.recipe(), config.runs(), config.out, config.execution())
    return SweepResult(summary, Path(config.out))


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: a shape trained for a number of steps of a batch size."""

    shape: Shape
    steps: int
    batch_size: int
    tokens_per_param: float
    """The ratio asked for; the run's own differs a little, the shapes and steps being whole numbers."""

    @property
    def name(self) -> str:
        return f"L{self.shape.n_layer}-d{self.shape.d_model}-b{self.batch_size}-s{self.steps}"

    def tokens(self, recipe: Recipe) -> int:
        return self.steps * self.batch_size * recipe.seq_len

    def flops(self, recipe: Recipe) -> int:
        return self.shape.flops_per_token(recipe.seq_len) * self.tokens(recipe)

    def lr(self, recipe: Recipe) -> float:
        return float(f"{recipe.lr_scale * learning_rate(self.flops(recipe)):.4g}")  # as the train command prints it

    def to_dict(self) -> dict[str, Any]:
        return {"n_layer": self.shape.n_layer, "d_model": self.shape.d_model, "steps": self.steps,
                "batch_size": self.batch_size, "tokens_per_param": self.tokens_per_param}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(Shape(data["n_layer"], data["d_model"]), data["steps"], data["batch_size"], data["tokens_per_param"])


@dataclass(frozen=True)
class Execution:
    """How the runs are executed; changing it never changes what they compute."""

    executor: str = "local"
    """`local` (one after another in this process) or `ray` (tasks on a Ray cluster: RAY_ADDRESS, else a local one)."""
    threads: int | None = None
    """CPU threads per run; on Ray also the CPUs each task reserves (default 1 there)."""
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        check_backend(self.executor)
        if self.threads is not None and self.threads < 1:
            raise GptlabError(f"threads must be at least 1, got {self.threads}")


# --- which runs ------------------------------------------------------------------------------------


def runs_for_sizes(recipe: Recipe, sizes: list[float], tokens_per_param: list[float]) -> list[RunSpec]:
    """Each size (non-embedding parameters) trained on each tokens-per-parameter ratio."""
    return _distinct(recipe, [run_spec(recipe, shape_for_params(n), ratio) for n in sizes for ratio in _ratios(tokens_per_param)])


def runs_for_budgets(recipe: Recipe, low: float, high: float, points: int, tokens_per_param: list[float]) -> list[RunSpec]:
    """`points` compute budgets spaced evenly in log between `low` and `high` FLOPs; at each, for each ratio R,
    the largest shape whose R·N tokens fit the budget (`budget_run`)."""
    if not 0 < low < high < math.inf:
        raise GptlabError(f"the compute budgets run from C_MIN to C_MAX with 0 < C_MIN < C_MAX, both finite, got {low:g} {high:g}")
    if points < 2:
        raise GptlabError(f"points must be at least 2, got {points}")
    budgets = [low * (high / low) ** (k / (points - 1)) for k in range(points)]
    return _distinct(recipe, [budget_run(recipe, budget, ratio) for budget in budgets for ratio in _ratios(tokens_per_param)])


def budget_run(recipe: Recipe, flops: float, tokens_per_param: float) -> RunSpec:
    """The largest shape of the rule that trains on `tokens_per_param` tokens per parameter within `flops`.

    The ratio is kept exact and the budget is an upper bound, rather than the other way round: the loss
    depends strongly on tokens per parameter at these sizes, so a family trained on one ratio lies on one
    smooth curve, while spending each budget exactly would scatter the ratio with the shapes' rounding.
    """
    def cost(shape: Shape) -> float:
        return shape.flops_per_token(recipe.seq_len) * tokens_per_param * shape.params

    fitting = [shape for shape in rule_shapes(math.sqrt(flops / (6 * tokens_per_param))) if cost(shape) <= flops]
    if not fitting:
        raise GptlabError(
            f"a budget of {flops:.3g} FLOPs cannot train the smallest shape ({SMALLEST}: {SMALLEST.params:,} parameters) "
            f"on {tokens_per_param:g} tokens per parameter; budgets start at {cost(SMALLEST):.3g} FLOPs"
        )
    return run_spec(recipe, fitting[-1], tokens_per_param)


def run_spec(recipe: Recipe, shape: Shape, ratio: float, tokens: float | None = None) -> RunSpec:
    """`shape` trained on `tokens` (default ratio·N), with the recipe's batch or the rule's for that compute."""
    tokens = ratio * shape.params if tokens is None else tokens
    flops = shape.flops_per_token(recipe.seq_len) * tokens
    batch = recipe.batch_size or max(1, round(batch_tokens(flops) / recipe.seq_len))
    steps = round(tokens / (batch * recipe.seq_len))
    if steps < 1:
        raise GptlabError(
            f"{shape.params:,} parameters at {ratio:g} tokens each is {tokens:,.0f} tokens, less than one step of "
            f"{batch}x{recipe.seq_len}; raise the tokens per parameter or lower the batch size or the sequence length"
        )
    return RunSpec(shape, steps, batch, ratio)


def _ratios(tokens_per_param: list[float]) -> list[float]:
    bad = [r for r in tokens_per_param if not r > 0]
    if bad or not tokens_per_param:
        raise GptlabError(f"tokens_per_param must be positive, got {bad[0] if bad else 'nothing'}")
    return sorted(set(tokens_per_param))


def _distinct(recipe: Recipe, specs: list[RunSpec]) -> list[RunSpec]:
    """`specs` once each, cheapest first: sizes or budgets closer than the shapes' spacing give the same run."""
    unique = {spec.name: spec for spec in specs}
    if len(unique) < len(specs):
        print(f"note: the {len(specs)} sizes or budgets asked for give {len(unique)} different runs (neighbours round "
              "to the same shape); each runs once", file=sys.stderr)
    return sorted(unique.values(), key=lambda s: (s.flops(recipe), s.name))


# --- running them ----------------------------------------------------------------------------------


SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"


def sweep(recipe: Recipe, specs: list[RunSpec], out: str | os.PathLike, execution: Execution = Execution()) -> dict[str, Any]:
    """Train the runs of `specs` not yet finished in `out`, then fit the laws to every run of the sweep and
    write scaling.json and scaling.png; the summary written is returned."""
    from gptlab.scale import report
    from gptlab.train.run_dir import locked

    out = Path(out)
    if execution.executor == "ray":
        connect_ray()  # an unreachable cluster fails now, not after the data is prepared
    with locked(out):
        state = _read_state(out, recipe)
        known = [RunSpec.from_dict(s) for s in state["runs"]] if state else []
        runs = _distinct(recipe, known + [s for s in specs if s.name not in {k.name for k in known}])
        if len(runs) < 4:
            raise GptlabError(f"{len(runs)} runs are too few to fit a scaling law with an uncertainty; ask for 4 at least")
        data = state["data"] if state else prepare_data(recipe, out, execution.progress)
        atomic.write_text(out / SWEEP_FILE, json.dumps(
            {"recipe": recipe.to_dict(), "data": data, "runs": [s.to_dict() for s in runs]}, indent=2) + "\n")
        for spec in runs:
            epochs = spec.tokens(recipe) / data["train_tokens"]
            if epochs > 1:
                print(f"warning: run {spec.name} trains on {spec.tokens(recipe):,} tokens, {epochs:.2f} epochs of the "
                      f"{data['train_tokens']:,} training tokens: it repeats its data, and the laws are fitted for "
                      "unrepeated data", file=sys.stderr)
        pending = []
        for spec in runs:
            if (run_path(out, spec) / "final").is_dir():
                print(f"skip {spec.name}: finished")
            else:
                pending.append(spec)
        if pending:
            _execute(recipe, data, pending, out, execution)
        summary = summarise(recipe, data, runs, out)
        report.write(out, summary)
    return summary


def run_path(out: Path, spec: RunSpec) -> Path:
    return out / RUNS_DIR / spec.name


def _read_state(out: Path, recipe: Recipe) -> dict[str, Any] | None:
    path = out / SWEEP_FILE
    if not path.is_file():
        return None
    state = read_json_object(path)
    saved = state.get("recipe", {})
    differ = [key for key, value in recipe.to_dict().items() if saved.get(key) != value]
    if differ:
        changes = ", ".join(f"{key} {_short(saved.get(key))} -> {_short(recipe.to_dict()[key])}" for key in differ)
        raise GptlabError(
            f"{out} holds a sweep with another recipe ({changes}); rerun it with its own settings or choose another sweep directory"
        )
    return state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def prepare_data(recipe: Recipe, out: Path, progress: bool) -> dict[str, Any]:
    """Fit a `bpe:N` or `char` tokenizer once, into out/tokenizer, for every run to share, and count the
    tokens of the training and validation splits (which the runs make the same way)."""
    from gptlab.data import build_corpus, split_documents
    from gptlab.data.shards import is_shards_dir
    from gptlab.train import build_config
    from gptlab.train.tokenizers import resolve_tokenizer

    config = build_config(None, {"data": list(recipe.data), "tokenizer": recipe.tokenizer, "val_fraction": recipe.val_fraction,
                                 "seed": recipe.seed, "out": str(out)})
    texts = not any(is_shards_dir(path) for path in recipe.data)
    split = split_documents(recipe.data, recipe.val_fraction, recipe.seed) if texts else None
    tokenizer = resolve_tokenizer(config, out, progress, split)
    spec = recipe.tokenizer
    if spec == "char" or spec.startswith("bpe:"):
        tokenizer.save(out / "tokenizer")
        spec = str((out / "tokenizer").resolve())
    corpus = build_corpus(recipe.data, tokenizer, recipe.val_fraction, recipe.seed, progress, split)
    if len(corpus.val) <= recipe.seq_len:
        raise GptlabError(
            f"the validation split holds {len(corpus.val):,} tokens, fewer than one window of seq_len {recipe.seq_len} "
            "plus its target, so no run could be scored; lower seq_len, raise val_fraction or add data"
        )
    return {"tokenizer": spec, "vocab_size": tokenizer.vocab_size, "train_tokens": len(corpus.train),
            "val_tokens": len(corpus.val)}


def train_settings(recipe: Recipe, data: dict[str, Any], spec: RunSpec, out: Path) -> dict[str, Any]:
    """The `gptlab train` settings of one run: the recipe, the shape, the steps, the batch and the learning rate."""
    return {
        "data": list(recipe.data), "tokenizer": data["tokenizer"], "model": BASE_PRESET,
        "n_layer": spec.shape.n_layer, "d_model": spec.shape.d_model, "n_head": spec.shape.n_head,
        "seq_len": recipe.seq_len, "batch_size": spec.batch_size, "max_steps": spec.steps,
        "lr": spec.lr(recipe), "warmup_steps": max(1, round(WARMUP * spec.steps)),
        "eval_every": spec.steps, "eval_windows": recipe.eval_windows, "save_every": math.ceil(spec.steps / SAVES_PER_RUN),
        "sample_tokens": 0, "val_fraction": recipe.val_fraction, "seed": recipe.seed, "out": str(out),
    }


def _execute(recipe: Recipe, data: dict[str, Any], specs: list[RunSpec], out: Path, execution: Execution) -> None:
    from gptlab.train import build_config
    from gptlab.train.checkpointing import checkpoints

    on_ray = execution.executor == "ray"
    configs = {}
    for spec in specs:
        path = run_path(out, spec)
        resume = bool(checkpoints(path))
        settings = train_settings(recipe, data, spec, path.resolve())
        config = build_config(None, {**settings, "resume": resume, "device": execution.device,
                                     "threads": execution.threads or (1 if on_ray else None),
                                     "progress": execution.progress and not on_ray})
        header = (f"{'resume' if resume else 'train'} {spec.name}: {spec.shape.params:,} parameters ({spec.shape}), "
                  f"{spec.tokens(recipe):,} tokens, {spec.flops(recipe):.3g} FLOPs, lr {settings['lr']:.3g}")
        if on_ray:
            print(header)
            configs[spec] = config
        else:
            print(header, flush=True)
            _train(config, spec.name)
    if on_ray:
        _run_on_ray(configs, execution)


def _train(config, name: str) -> None:
    from gptlab.errors import Interrupted
    from gptlab.train import train

    try:
        train(config)
    except Interrupted:
        raise
    except GptlabError as e:
        raise _run_error(name, e) from None


def _run_error(name: str, error: GptlabError) -> GptlabError:
    message = str(error)
    if message.startswith("loss became"):  # the trainer's stop on a non-finite loss
        return GptlabError(f"run {name} diverged: {message.split(';')[0]}; lower lr_scale and rerun the sweep")
    return GptlabError(f"run {name}: {message}")


def _run_on_ray(configs: dict[RunSpec, Any], execution: Execution) -> None:
    """Each run as a Ray task reserving its threads' CPUs (and a GPU when the device is CUDA)."""
    from tqdm.auto import tqdm

    ray = connect_ray()
    task = ray.remote(_train).options(num_cpus=execution.threads or 1,
                                       num_gpus=1 if execution.device.startswith("cuda") else 0)
    pending = {task.remote(config, spec.name): spec.name for spec, config in configs.items()}
    with tqdm(total=len(pending), desc="runs on Ray", unit="run", disable=not execution.progress) as bar:
        try:
            while pending:
                (done,), _ = ray.wait(list(pending), num_returns=1)
                name = pending.pop(done)
                try:
                    ray.get(done)
                except ray.exceptions.RayTaskError as e:  # _train named the run in a GptlabError
                    if isinstance(e.cause, GptlabError):
                        raise e.cause from None
                    raise GptlabError(f"run {name} failed on Ray: {str(e.cause or e).strip().splitlines()[-1]}") from None
                bar.update(1)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


# --- what they measured ----------------------------------------------------------------------------


def summarise(recipe: Recipe, data: dict[str, Any], runs: list[RunSpec], out: Path) -> dict[str, Any]:
    """Every run's size, tokens, FLOPs and final validation loss, and the laws fitted to them."""
    from gptlab.checkpoint.io import read_config
    from gptlab.scale import fit, shapes

    rows = []
    for spec in runs:
        final = read_config(run_path(out, spec) / "final").get("training", {})
        if "val_loss" not in final:
            raise GptlabError(f"run {spec.name} finished without a validation loss; see {run_path(out, spec)}")
        tokens = spec.tokens(recipe)
        rows.append({
            "name": spec.name, "n_layer": spec.shape.n_layer, "d_model": spec.shape.d_model, "n_head": spec.shape.n_head,
            "params": spec.shape.params,
            "params_with_embeddings": spec.shape.model_config(recipe.seq_len, data["vocab_size"]).closed_form_params(),
            "tokens": tokens, "tokens_per_param": tokens / spec.shape.params, "flops": spec.flops(recipe),
            "steps": spec.steps, "batch_size": spec.batch_size, "lr": spec.lr(recipe),
            "epochs": tokens / data["train_tokens"], "repeats_data": tokens > data["train_tokens"],
            "val_loss": final["val_loss"], "val_bpb": final.get("val_bpb"), "ratio_asked": spec.tokens_per_param,
        })
    several_ratios = len({row["ratio_asked"] for row in rows}) > 1
    best = math.inf
    for row in sorted(rows, key=lambda r: r["flops"]):  # the compute frontier: no cheaper run does better
        row["fitted"] = not several_ratios or row["val_loss"] < best
        best = min(best, row["val_loss"])
    fitted = [row for row in rows if row["fitted"]]
    compute = fit.fit_compute_law([r["flops"] for r in fitted], [r["val_loss"] for r in fitted], [r["name"] for r in fitted])
    try:
        data_law: dict[str, Any] = fit.fit_data_law([r["params"] for r in rows], [r["tokens"] for r in rows],
                                                     [r["val_loss"] for r in rows], [r["name"] for r in rows]).to_dict()
    except GptlabError as e:
        data_law = {"law": fit.DATA_LAW, "fitted": False, "why": str(e)}
    bpb = [r["val_bpb"] / r["val_loss"] for r in rows if r["val_bpb"] and r["val_loss"] > 0]
    return {
        "recipe": recipe.to_dict(), "data": data,
        "rules": {"shape": shapes.SHAPE_RULE, "flops": shapes.FLOPS_RULE,
                  "hyperparameters": shapes.HYPERPARAMETER_RULE + f", lr x {recipe.lr_scale:g}",
                  "fit": "L(C) on every run, or on the compute frontier (runs no cheaper run beats) when the sweep "
                         "has several token budgets per size; L(N, D) on every run"},
        "runs": rows, "loss_vs_compute": compute.to_dict(), "loss_vs_params_and_tokens": data_law,
        "bits_per_byte_per_nat": sum(bpb) / len(bpb) if bpb else None,
    }
