"""The one compiled part of onnxcert: ``onnxcert._kernels``, the host path's noise kernel.

It is optional: without a C compiler the install still succeeds, and onnxcert draws the noise
with its NumPy generator instead (slower; onnxcert says so once per process). The flags keep
the results independent of the build machine: no -march=native, no fused multiply-add.
Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

UNIX_FLAGS = ["-O2", "-std=c99", "-ffp-contract=off", "-fno-fast-math"]


class BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = UNIX_FLAGS + list(ext.extra_compile_args or [])
        elif self.compiler.compiler_type == "msvc":
            for ext in self.extensions:
                ext.extra_compile_args = ["/O2", "/fp:precise"] + list(ext.extra_compile_args or [])
        super().build_extensions()


setup(
    ext_modules=[Extension("onnxcert._kernels", sources=["onnxcert/_kernels.c"],
                           depends=["onnxcert/_ziggurat_tables.h"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
