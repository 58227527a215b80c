"""Build step for the one C extension, schemas._avro (the native Avro codec of the runner's
hot path; see schemas/_avro.c). Everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("schemas._avro", ["schemas/_avro.c"], extra_compile_args=["-O2"])])
