"""PEP 562 lazy package exports: `import gptlab.model.config` or `gptlab --help` must not pay for
importing PyTorch, so packages import a name's submodule only when the name is first used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `package.<exports[name]>` on first use.

    Every export of an already imported submodule is then bound in the package, because importing a
    submodule binds its own name there: `gptlab.model.local_attention` is the function, not its module.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace = vars(sys.modules[package])
        namespace[name] = value
        for export, module in exports.items():  # rebind names that a submodule import shadowed
            defined = vars(sys.modules[f"{package}.{module}"]) if f"{package}.{module}" in sys.modules else {}
            if export in defined:
                namespace[export] = defined[export]
        return value

    return __getattr__
