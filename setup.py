"""Build step pyproject.toml cannot express: compile the preloaded allocation shim.

The shim (the C files in collectors/shim/, listed in placer.collectors.shim.build.SOURCES) is a
plain C shared library for LD_PRELOAD, not a Python extension; it is declared as one only
so that ``pip install .`` and ``pip install -e .`` both build it (into the wheel, or next
to its sources). Without a C compiler the install still succeeds:
``placer.collectors.shim.library.shim_path()`` then explains what is missing when the shim is first needed.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# the project's own modules, from this checkout (an isolated build does not install them)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from placer.collectors.shim.build import SOURCES, compile_shim  # noqa: E402
from placer.errors import ExternalToolError  # noqa: E402

SHIM = "placer.collectors.shim.libplacer_shim"


class BuildShim(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        # asked with the full dotted name, or with its last part only (get_ext_fullpath)
        if fullname == SHIM:
            return os.path.join(*fullname.split(".")) + ".so"
        if fullname == SHIM.rpartition(".")[2]:
            return fullname + ".so"
        return super().get_ext_filename(fullname)

    def build_extension(self, ext: Extension) -> None:
        if ext.name != SHIM:
            super().build_extension(ext)
            return
        out = self.get_ext_fullpath(ext.name)
        try:
            compile_shim(out)
        except ExternalToolError as exc:
            print(f"warning: the allocation shim was not built: {exc}", file=sys.stderr)


setup(
    ext_modules=[Extension(SHIM, sources=[f"collectors/shim/{name}" for name in SOURCES])],
    cmdclass={"build_ext": BuildShim},
)
