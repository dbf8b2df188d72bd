"""Prompts that fit the model: the harness builds each prompt, gptlab chooses how many examples it holds.

The harness draws K examples per document and would fail where the few-shot pool holds fewer, and
cut the start of a prompt longer than the model's context. gptlab instead caps K at the pool (less
the document asked, where the pool is the evaluated split) and keeps, of the examples drawn, as many
as fit (the first ones), so K stays what the prompt really holds. Draws are the harness's own: its
sampler, seeded as it seeds it, is asked for the (capped) K examples of every document in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError

if TYPE_CHECKING:
    from lm_eval.api.task import ConfigurableTask

    from gptlab.eval.harness import GptlabLM


@dataclass
class _Chosen:
    """Stands in for the task's sampler while one prompt is built from examples already drawn."""

    docs: Sequence[dict[str, Any]]

    def sample(self, n: int, eval_doc: Any = None, **_: Any) -> list[dict[str, Any]]:
        return list(self.docs[:n])


@dataclass
class PromptFitter:
    """Installed on one harness task (`install`): its `fewshot_context` goes through `context`."""

    task: ConfigurableTask
    model: GptlabLM
    kept: list[int] = field(default_factory=list)
    """Examples each prompt of the latest build holds, document after document."""
    drawn: list[int] = field(default_factory=list)
    """Examples drawn for each of them."""
    _build: Any = field(init=False, repr=False)
    """The harness's own `fewshot_context`."""

    def install(self) -> PromptFitter:
        self._build = self.task.fewshot_context
        self.task.fewshot_context = self.context
        return self

    @property
    def name(self) -> str:
        return self.task.config.task

    @property
    def excludes_eval_doc(self) -> bool:
        """The harness leaves the document asked out of its draw when the few-shot split is the one evaluated."""
        return self.task.fewshot_cfg.split == self.task.config.test_split

    @property
    def pool(self) -> int:
        sampler = getattr(self.task, "sampler", None)
        return len(sampler.fewshot_docs()) if sampler is not None else 0

    @property
    def max_shots(self) -> int:
        return max(0, self.pool - self.excludes_eval_doc)

    def reset(self) -> None:
        self.kept.clear()
        self.drawn.clear()

    def context(self, doc: dict[str, Any], num_fewshot: int, **options: Any) -> str | list[str]:
        index = len(self.kept)
        k = min(num_fewshot, self.max_shots)
        drawn = list(self.task.sampler.sample(n=k, eval_doc=doc if self.excludes_eval_doc else None)) if k else []
        prompt = self._with(doc, drawn, options, index)
        if prompt is None:  # the largest n that fits, if any
            low, high = 0, len(drawn) - 1
            while low <= high:
                mid = (low + high) // 2
                if (found := self._with(doc, drawn[:mid], options, index)) is not None:
                    prompt, low = found, mid + 1
                else:
                    high = mid - 1
        if prompt is None:
            split = self.task.config.test_split or self.task.config.validation_split
            raise GptlabError(
                f"task {self.name}: {split} row {index + 1} does not fit the model's context of "
                f"{self.model.lm.config.n_ctx} tokens even with no examples (lm-evaluation-harness would cut its "
                f"start); shorten it or use a model with a longer context"
            )
        context, n = prompt
        self.kept.append(n)
        self.drawn.append(len(drawn))
        return context

    def _with(
        self, doc: dict[str, Any], shots: list[dict[str, Any]], options: dict[str, Any], index: int
    ) -> tuple[str | list[str], int] | None:
        """The harness's prompt holding `shots`, and their number; None if one of its requests does not fit."""
        if shots:
            sampler, self.task.sampler = self.task.sampler, _Chosen(shots)
            try:
                context = self._build(doc, num_fewshot=len(shots), **options)
            finally:
                self.task.sampler = sampler
        else:
            context = self._build(doc, num_fewshot=0, **options)
        requests = self.task.construct_requests(doc=doc, ctx=context, metadata=(self.name, index, 1))
        return (context, len(shots)) if all(self._fits(r) for r in _listed(requests)) else None

    def _fits(self, request: Any) -> bool:
        n_ctx = self.model.lm.config.n_ctx
        if request.request_type == "loglikelihood":
            context, continuation = self.model.encode(*request.args[:2])
            return len(context) + len(continuation) <= n_ctx + 1
        if request.request_type == "generate_until":
            return len(self.model.lm.require_tokenizer().encode(request.args[0])) < n_ctx
        return True


def _listed(requests: Any) -> list[Any]:
    return requests if isinstance(requests, list) else [requests]
