"""Compile an Avro record schema into a specialised Python encoder function.

Why: fastavro's generic writer walks the schema for every record (~11 µs for a
UavTelemetry here); every producer and the enforcement runner encode each record, so
that walk would cap the data plane below the broker's speed. A generated function with
the schema unrolled (runs of doubles packed by one struct call, enum indexes precomputed,
[null, X] unions as one branch) is ~3x faster and produces the same bytes, which the
tests check against fastavro. Type errors raise TypeError/ValueError/KeyError; the caller
turns them into a readable RecordInvalid. Schemas with a construct this compiler does not
handle raise Unsupported, and the caller falls back to fastavro.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable

from fastavro.schema import expand_schema

from .errors import CitymeshError

try:  # the C walker of the same schemas (schemas/_avro.c), built by `pip install -e .`
    from . import _avro
except ImportError:  # pragma: no cover - a checkout whose extension was not built
    _avro = None

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)


class Unsupported(CitymeshError):
    """The schema uses something the compiler does not unroll; use the generic writer."""


def _zz64(n: int) -> bytes:
    # a str fails the comparison and a float the shift, each with TypeError
    if not -0x8000000000000000 <= n <= 0x7FFFFFFFFFFFFFFF:
        raise OverflowError(f"{n} does not fit a long")
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zz32(n: int) -> bytes:
    if n.__class__ is not int and not isinstance(n, int):
        raise TypeError(f"expected an integer, got {type(n).__name__}")
    if not _INT32[0] <= n <= _INT32[1]:
        raise OverflowError(f"{n} does not fit an int")
    return _zz64(n)


_SMALL = [bytes((i,)) for i in range(128)]
_LEN = [bytes((2 * i,)) for i in range(64)]  # zigzag varint of a short length: one byte


def _double(v: Any) -> bytes:
    return _D(v)


def _bool(v: Any) -> bytes:
    if v is True:
        return b"\x01"
    if v is False:
        return b"\x00"
    raise TypeError(f"expected a boolean, got {type(v).__name__}")


def _str(v: Any) -> bytes:
    if v.__class__ is not str and not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    b = v.encode()
    return _zz64(len(b)) + b


def _bytes(v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray)):
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    return _zz64(len(v)) + bytes(v)


_D = struct.Struct("<d").pack
_F = struct.Struct("<f").pack


def _null(v: Any) -> bytes:
    if v is not None:
        raise TypeError(f"expected null, got {type(v).__name__}")
    return b""


class _Compiler:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {
            "_zz64": _zz64, "_zz32": _zz32, "_str": _str, "_bytes": _bytes, "_bool": _bool,
            "_D": _D, "_F": _F, "_null": _null, "struct": struct, "_LEN": _LEN,
        }
        self.lines: list[str] = []
        self.n = 0

    def var(self, prefix: str = "v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value: Any, prefix: str = "C") -> str:
        name = f"_{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, line: str, ind: int) -> None:
        self.lines.append("    " * ind + line)

    def value(self, t: Any, expr: str, ind: int) -> None:
        """Append the encoding of `expr` (of Avro type t) to `out`."""
        if isinstance(t, dict) and t.get("type") in _PRIMITIVES:
            t = t["type"]
        if t == "string":  # inlined: the commonest type, and a call per field costs
            b = self.var("b")
            self.emit(f"{b} = {expr}.encode()", ind)
            self.emit(f"a(_LEN[len({b})] if len({b}) < 64 else _zz64(len({b})))", ind)
            self.emit(f"a({b})", ind)
            return
        if isinstance(t, str):
            fn = {"null": "_null", "boolean": "_bool", "int": "_zz32", "long": "_zz64", "float": "_F",
                  "double": "_D", "bytes": "_bytes", "string": "_str"}.get(t)
            if fn is None:
                raise Unsupported(f"named reference {t}")
            self.emit(f"a({fn}({expr}))", ind)
            return
        if isinstance(t, list):
            self.union(t, expr, ind)
            return
        kind = t["type"]
        if kind == "record":
            self.record(t, expr, ind)
        elif kind == "enum":
            table = self.const({s: _zz64(i) for i, s in enumerate(t["symbols"])}, "E")
            self.emit(f"a({table}[{expr}])", ind)
        elif kind == "fixed":
            size = t["size"]
            self.emit(f"if len({expr}) != {size}: raise ValueError('fixed size {size} expected')", ind)
            self.emit(f"a(bytes({expr}))", ind)
        elif kind == "array":
            x = self.var("x")
            self.emit(f"if {expr}:", ind)
            self.emit(f"a(_zz64(len({expr})))", ind + 1)
            self.emit(f"for {x} in {expr}:", ind + 1)
            self.value(t["items"], x, ind + 2)
            self.emit("a(b'\\x00')", ind)
        elif kind == "map":
            k, x = self.var("k"), self.var("x")
            self.emit(f"if {expr}:", ind)
            self.emit(f"a(_zz64(len({expr})))", ind + 1)
            self.emit(f"for {k}, {x} in {expr}.items():", ind + 1)
            self.emit(f"a(_str({k}))", ind + 2)
            self.value(t["values"], x, ind + 2)
            self.emit("a(b'\\x00')", ind)
        else:
            raise Unsupported(f"type {kind}")

    def union(self, branches: list, expr: str, ind: int) -> None:
        names = [b if isinstance(b, str) else b.get("type") for b in branches]
        if len(branches) == 2 and "null" in names:
            ni = names.index("null")
            other = branches[1 - ni]
            self.emit(f"if {expr} is None:", ind)
            self.emit(f"a({self.const(_zz64(ni), 'U')})", ind + 1)
            self.emit("else:", ind)
            self.emit(f"a({self.const(_zz64(1 - ni), 'U')})", ind + 1)
            self.value(other, expr, ind + 1)
            return
        raise Unsupported("union other than [null, X]")

    def record(self, schema: dict, expr: str, ind: int, values: dict[str, str] | None = None) -> None:
        """Encode record `expr`; with `values` (field name -> expression), each field's value is
        that expression instead of a look-up in a dict (every field must have one)."""
        fields = schema["fields"]
        if values is None:
            allowed = self.const(frozenset(f["name"] for f in fields), "K")
            self.emit(f"if not {expr}.keys() <= {allowed}: raise ValueError('unknown field(s): ' + ', '.join(sorted(set({expr}) - {allowed})))", ind)
            values = {f["name"]: (f"{expr}.get({f['name']!r}, {self.const(f['default'], 'Dft')})" if "default" in f
                                  else f"{expr}[{f['name']!r}]") for f in fields}
            doubles = {f["name"] for f in fields if f["type"] == "double" and "default" not in f}
        else:
            doubles = {f["name"] for f in fields if f["type"] == "double"}
        i = 0
        while i < len(fields):
            f = fields[i]
            # a run of required doubles is packed by one struct call
            run = 0
            while i + run < len(fields) and fields[i + run]["name"] in doubles:
                run += 1
            if run > 1:
                packer = self.const(struct.Struct(f"<{run}d").pack, "P")
                args = ", ".join(values[fields[i + j]["name"]] for j in range(run))
                self.emit(f"a({packer}({args}))", ind)
                i += run
                continue
            v = self.var()
            self.emit(f"{v} = {values[f['name']]}", ind)
            self.value(f["type"], v, ind)
            i += 1


def compile_fields_encoder(definition: dict, prefix: bytes = b"") -> Callable[..., bytes]:
    """Return encode(v0, v1, ...) -> `prefix` + Avro binary body of a record whose fields, in
    schema order, have the values v0, v1, ...: for a caller that computes each field itself
    (the policy plans), so no dict is built only to be taken apart again."""
    c = _Compiler()
    expanded = expand_schema(definition)
    args = [f"f{i}" for i in range(len(expanded["fields"]))]
    c.emit(f"def encode({', '.join(args)}):", 0)
    c.emit(f"out = [{c.const(prefix, 'H')}]", 1)
    c.emit("a = out.append", 1)
    c.record(expanded, "", 1, {f["name"]: a for f, a in zip(expanded["fields"], args)})
    return _finish(c, f"<avro fields encoder {definition.get('name')}>")


def compile_encoder(definition: dict) -> Callable[[dict], bytes]:
    """Return encode(record) -> Avro binary body, equal byte for byte to fastavro's."""
    c = _Compiler()
    expanded = expand_schema(definition)
    c.emit("def encode(r):", 0)
    c.emit("out = []", 1)
    c.emit("a = out.append", 1)
    c.record(expanded, "r", 1)
    return _finish(c, f"<avro encoder {definition.get('name')}>")


def _finish(c: _Compiler, filename: str) -> Callable:
    c.emit("return b''.join(out)", 1)
    return _build(c, filename, "encode")


def _build(c: _Compiler, filename: str, name: str) -> Callable:
    """Compile what `c` emitted; the function `name` it defines, its source as the docstring."""
    source = "\n".join(c.lines)
    namespace = dict(c.consts)
    exec(compile(source, filename, "exec"), namespace)
    fn = namespace[name]
    fn.__doc__ = source
    return fn


# ---- decoding ---------------------------------------------------------------------------

def _varint(v: bytes, p: int) -> tuple[int, int]:
    """Zigzag varint at v[p] (the multi-byte case; one byte is inlined): (value, next position)."""
    b = v[p]
    p += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = v[p]
        p += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise ValueError("varint does not fit 64 bits")
    return (n >> 1) ^ -(n & 1), p


class _DecoderCompiler(_Compiler):
    """Emits code that reads Avro binary from `v` at position `p`, advancing `p`.

    Strict where the spec is: a boolean byte other than 0/1, an enum index or union branch
    out of range, a negative length, invalid UTF-8 or a buffer that ends early all raise
    (ValueError, IndexError, UnicodeDecodeError or struct.error)."""

    def __init__(self) -> None:
        super().__init__()
        self.consts.update({"_varint": _varint, "_Du": struct.Struct("<d").unpack_from,
                            "_Fu": struct.Struct("<f").unpack_from})

    def varint(self, target: str, ind: int, what: str | None = None) -> None:
        """A zigzag varint into `target`, the one-byte case inlined. With `what` (a length, an
        enum index) it must not be negative, and the common case is one test: a small even byte."""
        b = self.var("b")
        self.emit(f"{b} = v[p]", ind)
        if what is None:
            self.emit(f"if {b} < 0x80:", ind)
            self.emit(f"{target} = ({b} >> 1) ^ -({b} & 1)", ind + 1)
        else:
            self.emit(f"if not {b} & 0x81:", ind)
            self.emit(f"{target} = {b} >> 1", ind + 1)
        self.emit("p += 1", ind + 1)
        self.emit("else:", ind)
        self.emit(f"{target}, p = _varint(v, p)", ind + 1)
        if what is not None:
            self.emit(f"if {target} < 0: raise ValueError('negative {what} ' + str({target}))", ind + 1)

    def read(self, t: Any, target: str, ind: int) -> None:
        """Assign the value of Avro type t at `p` to `target`."""
        if isinstance(t, dict) and t.get("type") in _PRIMITIVES:
            t = t["type"]
        if t == "null":
            self.emit(f"{target} = None", ind)
        elif t == "boolean":
            b = self.var("b")
            self.emit(f"{b} = v[p]", ind)
            self.emit("p += 1", ind)
            self.emit(f"if {b} > 1: raise ValueError('boolean byte ' + str({b}))", ind)
            self.emit(f"{target} = {b} == 1", ind)
        elif t in ("int", "long"):
            self.varint(target, ind)
        elif t == "float":
            self.emit(f"{target} = _Fu(v, p)[0]", ind)
            self.emit("p += 4", ind)
        elif t == "double":
            self.emit(f"{target} = _Du(v, p)[0]", ind)
            self.emit("p += 8", ind)
        elif t in ("string", "bytes"):
            n = self.var("n")
            self.varint(n, ind, "length")
            self.emit(f"{target} = v[p:p + {n}]{'.decode()' if t == 'string' else ''}", ind)
            self.emit(f"p += {n}", ind)
        elif isinstance(t, str):
            raise Unsupported(f"named reference {t}")
        elif isinstance(t, list):
            self.union(t, target, ind)
        elif t["type"] == "record":
            self.record(t, target, ind)
        elif t["type"] == "enum":
            syms, i = self.const(tuple(t["symbols"]), "S"), self.var("i")
            self.varint(i, ind, "enum index")
            self.emit(f"{target} = {syms}[{i}]", ind)
        elif t["type"] == "fixed":
            size = t["size"]
            self.emit(f"{target} = v[p:p + {size}]", ind)
            self.emit(f"p += {size}", ind)
        elif t["type"] in ("array", "map"):
            self.block(t, target, ind)
        else:
            raise Unsupported(f"type {t['type']}")

    def union(self, branches: list, target: str, ind: int) -> None:
        names = [b if isinstance(b, str) else b.get("type") for b in branches]
        if not (len(branches) == 2 and "null" in names):
            raise Unsupported("union other than [null, X]")
        ni = names.index("null")
        b = self.var("b")
        self.emit(f"{b} = v[p]", ind)
        self.emit("p += 1", ind)
        self.emit(f"if {b} == {2 * ni}:", ind)
        self.emit(f"{target} = None", ind + 1)
        self.emit(f"elif {b} == {2 * (1 - ni)}:", ind)
        self.read(branches[1 - ni], target, ind + 1)
        self.emit("else:", ind)
        self.emit(f"raise ValueError('union branch byte ' + str({b}))", ind + 1)

    def block(self, t: dict, target: str, ind: int) -> None:
        """Arrays and maps: blocks of items until a zero count; a negative count is followed
        by the block's size in bytes (skipped: the items are read one by one anyway)."""
        count, skip, k, x = self.var("c"), self.var("s"), self.var("k"), self.var("x")
        is_map = t["type"] == "map"
        self.emit(f"{target} = {{}}" if is_map else f"{target} = []", ind)
        self.emit("while True:", ind)
        self.varint(count, ind + 1)
        self.emit(f"if {count} == 0: break", ind + 1)
        self.emit(f"if {count} < 0:", ind + 1)
        self.emit(f"{count} = -{count}", ind + 2)
        self.varint(skip, ind + 2)
        self.emit(f"for _ in range({count}):", ind + 1)
        if is_map:
            self.read("string", k, ind + 2)
            self.read(t["values"], x, ind + 2)
            self.emit(f"{target}[{k}] = {x}", ind + 2)
        else:
            self.read(t["items"], x, ind + 2)
            self.emit(f"{target}.append({x})", ind + 2)

    def record(self, schema: dict, target: str, ind: int) -> None:
        """Read a record's fields into locals (a run of doubles with one struct call), then
        assign `target` the dict of them."""
        fields = schema["fields"]
        names = {}
        i = 0
        while i < len(fields):
            run = 0
            while i + run < len(fields) and fields[i + run]["type"] == "double":
                run += 1
            if run > 1:  # a run of doubles: one struct call
                unpack = self.const(struct.Struct(f"<{run}d").unpack_from, "Pu")
                vs = [self.var("d") for _ in range(run)]
                self.emit(f"{', '.join(vs)} = {unpack}(v, p)", ind)
                self.emit(f"p += {8 * run}", ind)
                for j in range(run):
                    names[fields[i + j]["name"]] = vs[j]
                i += run
                continue
            x = self.var("f")
            self.read(fields[i]["type"], x, ind)
            names[fields[i]["name"]] = x
            i += 1
        self.emit(f"{target} = {{{', '.join(f'{n!r}: {x}' for n, x in names.items())}}}", ind)


def compile_decoder(definition: dict) -> Callable[[bytes, int], tuple[dict, int]]:
    """Return decode(buf, pos) -> (record, position after it): the Avro binary body at
    buf[pos:], the same dict fastavro's schemaless_reader returns (logical types left as
    their underlying values). The caller checks the end position (trailing bytes).

    Why: fastavro's reader walks the schema per record (~4.7 µs for a UavTelemetry here);
    the runner decodes every raw record it admits, and a generated reader with the schema
    unrolled takes ~2 µs. Tests check it against fastavro on random records and bytes."""
    c = _DecoderCompiler()
    expanded = expand_schema(definition)
    c.emit("def decode(v, p):", 0)
    c.record(expanded, "r", 1)
    c.emit("return r, p", 1)
    return _build(c, f"<avro decoder {definition.get('name')}>", "decode")


# ---- the native codec -------------------------------------------------------------------


def native_enabled() -> bool:
    """False when CITYMESH_NATIVE=0 switches off every C part (this codec and the record tag
    in streams/_hmac.c), to measure the Python code they replace."""
    return os.environ.get("CITYMESH_NATIVE", "1") != "0"


def native_available() -> bool:
    """Whether schemas._avro is built and not switched off."""
    return _avro is not None and native_enabled()


def program(t: Any) -> tuple:
    """The tuple program schemas/_avro.c walks, for an expanded schema (named types inlined);
    Unsupported for what the generated Python does not handle either."""
    if _avro is None:
        raise Unsupported("schemas._avro is not built")
    if isinstance(t, dict) and t.get("type") in _PRIMITIVES:
        t = t["type"]
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise Unsupported(f"named reference {t}")
        return (getattr(_avro, t.upper()),)
    if isinstance(t, list):
        names = [b if isinstance(b, str) else b.get("type") for b in t]
        if not (len(t) == 2 and "null" in names):
            raise Unsupported("union other than [null, X]")
        ni = names.index("null")
        return (_avro.UNION_NULL, ni, program(t[1 - ni]))
    kind = t["type"]
    if kind == "record":
        fields = t["fields"]
        return (_avro.RECORD, tuple(f["name"] for f in fields), tuple(program(f["type"]) for f in fields),
                tuple(f.get("default", _avro.MISSING) for f in fields))
    if kind == "enum":
        return (_avro.ENUM, tuple(t["symbols"]))
    if kind == "fixed":
        return (_avro.FIXED, t["size"])
    if kind in ("array", "map"):
        return (_avro.ARRAY if kind == "array" else _avro.MAP, program(t["items" if kind == "array" else "values"]))
    raise Unsupported(f"type {kind}")


def decoder(definition: dict) -> Callable[[bytes, int], tuple[dict, int]]:
    """decode(buf, pos) -> (record, end): the C walker when built, else compile_decoder's
    function. Both raise on malformed input; the C one also on a buffer that ends early,
    where the Python one returns an end past the buffer (which says how much is missing)."""
    if native_available():
        return _avro.Decoder(program(expand_schema(definition)))
    return compile_decoder(definition)


def encoder(definition: dict) -> Callable[[dict], bytes]:
    """encode(record) -> Avro binary body: the C walker when built, else compile_encoder's."""
    if native_available():
        return _avro.Encoder(program(expand_schema(definition)))
    return compile_encoder(definition)


def fields_encoder(definition: dict, prefix: bytes = b"") -> Callable[..., bytes]:
    """encode(v0, v1, ...) -> prefix + body, as compile_fields_encoder, in C when built."""
    if native_available():
        return _avro.Encoder(program(expand_schema(definition)), prefix, True)
    return compile_fields_encoder(definition, prefix)
