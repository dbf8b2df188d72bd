"""Makes `lm_eval --model gptlab` work: the harness has no plugin hook for models, only its registry.

A `.pth` file installed beside gptlab imports this module at interpreter start-up. It costs no
imports of its own (standard library only, no torch): it waits for `lm_eval.models` to be imported
and then registers `gptlab` in the harness's model registry as a lazy path, so gptlab itself loads
only when someone asks for the model.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_WATCHED = "lm_eval.models"
_TARGET = "gptlab.eval.harness:GptlabLM"


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _WATCHED:
            return None
        sys.meta_path.remove(self)  # once, and out of the way of the real finder below
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            try:
                from lm_eval.api.registry import model_registry

                if "gptlab" not in model_registry:
                    model_registry.register("gptlab", target=_TARGET)
            except Exception:  # another harness version: `import gptlab.eval.harness` still registers it
                pass

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if _WATCHED not in sys.modules and not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


install()
