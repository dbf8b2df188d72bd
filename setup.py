"""Only for what pyproject.toml cannot say: a `.pth` file at the root of site-packages.

`gptlab_lm_eval.pth` imports `_gptlab_lm_eval`, which registers the `gptlab` model with
lm-evaluation-harness once the harness loads its models (see that module for why).
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "gptlab_lm_eval.pth"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        target = self.build_lib
        if self.editable_mode:  # an editable wheel holds only what lands in its root, where install puts it
            target = self.get_finalized_command("install").install_lib
        self.copy_file(os.path.join("src", PTH), os.path.join(target, PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
