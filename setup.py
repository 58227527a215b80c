"""Build step for the C extensions of the runner's hot path: schemas._avro (the Avro codec,
schemas/_avro.c) and streams._hmac (the record tag, streams/_hmac.c, on OpenSSL's libcrypto,
which CPython's hashlib uses too). Everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("schemas._avro", ["schemas/_avro.c"], extra_compile_args=["-O2"]),
    Extension("streams._hmac", ["streams/_hmac.c"], libraries=["crypto"], extra_compile_args=["-O2"]),
])
