"""CSV import with a column-mapping file: work-order exports -> HotlineTicket (or any schema).

Hotline systems and open-data portals export CSV with their own headers, date formats
and status words. A mapping file (YAML, `mappings/*.yaml`) says, per field of the target
schema, where its value comes from; conversion follows the schema's type, so the file
only says what differs:

    schema: HotlineTicket
    encoding: utf-8-sig            # Excel's BOM
    timezone: Asia/Shanghai        # of naive date/times in the file
    date_formats: ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"]
    key: order_no                  # duplicate keys in one file are bad rows
    attributes: [列名, ...]         # extra columns kept in the `attributes` map
    fields:
      order_no: {column: 工单编号, required: true}
      status: {column: 办理状态, map: {已办结: COMPLETED}, strict: true, default: RECEIVED}
      content: {template: "{Complaint Type}: {Descriptor}"}
      channel: {value: PHONE}

A field spec takes one source (`column` — a name or a list of alternatives, `template`,
or `value`) and optionally `map`, `strict` (unmapped values are errors), `default`,
`required`, `date_formats`. Schema fields with defaults may be left out.

Every data row is accounted for: imported, or reported by line number with the reason;
bad rows never stop the import. A mapping file that names an unknown field, option or
column is refused before any row is read, naming the file and the field.

    python -m streams.adapters.csv_import --provider P --product tickets --mapping nyc311 FILE.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

import schemas
from schemas.errors import CitymeshError, PathError

from .base import Intake, Publish, common_parser, connect, serve_metrics

log = logging.getLogger("citymesh.adapters.csv")

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
FIELD_OPTIONS = {"column", "template", "value", "map", "strict", "default", "required", "date_formats"}
TOP_OPTIONS = {"schema", "encoding", "delimiter", "timezone", "date_formats", "key", "attributes", "fields",
               "description"}
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
TRUE = {"1", "true", "yes", "y", "t", "是", "√"}
FALSE = {"0", "false", "no", "n", "f", "否", ""}


class MappingError(PathError, ValueError):
    """The mapping file is malformed: ``MappingError(detail, path, file)``, whose message
    names the file and the path inside it (``nyc311.yaml: fields.status.map: ...``), in the
    style of a policy's errors."""


class RowError(ValueError, CitymeshError):
    """One row cannot become a record; the message is the reason reported with its line."""


def _kind(avro_type) -> tuple[str, bool, list | None]:
    """(kind, nullable, enum symbols) of a schema field type."""
    nullable = False
    if isinstance(avro_type, list):
        nullable = "null" in avro_type
        avro_type = next(t for t in avro_type if t != "null")
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return "datetime", nullable, None
        if avro_type["type"] == "enum":
            return "enum", nullable, avro_type["symbols"]
        return avro_type["type"], nullable, None
    return avro_type, nullable, None


@dataclass
class FieldRule:
    name: str
    kind: str
    nullable: bool
    symbols: list | None
    column: list[str] | None = None
    template: str | None = None
    value: object = None
    map: dict | None = None
    strict: bool = False
    default: object = None
    required: bool = False
    date_formats: list[str] | None = None
    schema_default: object = None
    has_schema_default: bool = False


@dataclass
class Mapping:
    """A parsed, schema-checked mapping file."""

    path: str
    schema: schemas.RecordSchema
    rules: list[FieldRule]
    encoding: str = "utf-8"
    delimiter: str = ","
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    date_formats: list[str] = field(default_factory=lambda: ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"])
    key: str | None = None
    attributes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "Mapping":
        """A file path, or the name of a shipped mapping (`nyc311`, `hotline12345`)."""
        path = Path(name_or_path)
        if not path.exists() and (MAPPINGS_DIR / f"{name_or_path}.yaml").exists():
            path = MAPPINGS_DIR / f"{name_or_path}.yaml"
        src = str(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MappingError(f"cannot read mapping file ({exc.strerror})", source=src) from None
        except yaml.YAMLError as exc:
            raise MappingError(f"not valid YAML: {exc}", source=src) from None
        if not isinstance(doc, dict):
            raise MappingError("a mapping file is a YAML mapping with 'schema' and 'fields'", source=src)
        unknown = set(doc) - TOP_OPTIONS
        if unknown:
            raise MappingError(f"unknown option(s) {', '.join(sorted(unknown))}", source=src)
        try:
            schema = schemas.load(str(doc.get("schema") or "HotlineTicket"))
        except Exception as exc:
            raise MappingError(str(exc), "schema", src) from None
        try:
            tz = ZoneInfo(str(doc.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"unknown time zone {doc.get('timezone')!r}", "timezone", src) from None
        fields = doc.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise MappingError("expected a mapping of schema field -> spec", "fields", src)
        by_name = {f["name"]: f for f in schema.definition["fields"]}
        rules = []
        for name, spec in fields.items():
            where = f"fields.{name}"
            if name not in by_name:
                raise MappingError(f"{schema.name} has no field {name!r}", where, src)
            if isinstance(spec, str):
                spec = {"column": spec}
            if not isinstance(spec, dict):
                raise MappingError("expected a column name or a mapping of options", where, src)
            bad = set(spec) - FIELD_OPTIONS
            if bad:
                raise MappingError(f"unknown option(s) {', '.join(sorted(bad))}", where, src)
            sources = [k for k in ("column", "template", "value") if k in spec]
            if len(sources) != 1:
                raise MappingError("give exactly one of column, template, value", where, src)
            kind, nullable, symbols = _kind(by_name[name]["type"])
            column = spec.get("column")
            if column is not None:
                column = [column] if isinstance(column, str) else column
                if not isinstance(column, list) or not all(isinstance(c, str) and c for c in column):
                    raise MappingError("expected a column name or a list of names", f"{where}.column", src)
            if "map" in spec and not isinstance(spec["map"], dict):
                raise MappingError("expected a mapping of file value -> field value", f"{where}.map", src)
            rule = FieldRule(name, kind, nullable, symbols, column, spec.get("template"), spec.get("value"),
                             {str(k): v for k, v in (spec.get("map") or {}).items()} or None,
                             bool(spec.get("strict")), spec.get("default"), bool(spec.get("required")),
                             spec.get("date_formats"))
            if "default" in by_name[name]:
                rule.schema_default, rule.has_schema_default = by_name[name]["default"], True
            if symbols:
                for v in [*(rule.map or {}).values(), rule.default, rule.value]:
                    if v is not None and v not in symbols:
                        raise MappingError(f"{v!r} is not a {name} value ({', '.join(symbols)})", where, src)
            rules.append(rule)
        mapped = {r.name for r in rules} | ({"attributes"} if doc.get("attributes") else set())
        for name, f in by_name.items():
            if name not in mapped and "default" not in f:
                raise MappingError(f"required by {schema.name} but not mapped", f"fields.{name}", src)
        attrs = doc.get("attributes") or []
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise MappingError("expected a list of column names", "attributes", src)
        fmts = doc.get("date_formats")
        return cls(src, schema, rules, str(doc.get("encoding") or "utf-8"), str(doc.get("delimiter") or ","), tz,
                   list(fmts) if fmts else cls.__dataclass_fields__["date_formats"].default_factory(),
                   doc.get("key"), attrs)

    def columns(self, header: list[str]) -> tuple[dict[str, str | None], list[str]]:
        """Resolve column alternatives against the file header -> (field -> column, missing).

        A required field whose column is absent refuses the file (every row would fail the
        same way); an optional one takes its default and is reported as missing, because
        exports from different hotline systems leave out different optional columns."""
        have, out, missing = set(header), {}, []
        for r in self.rules:
            if r.column:
                hit = next((c for c in r.column if c in have), None)
                if hit is None and r.required:
                    raise MappingError(f"none of {r.column} in the file header", f"fields.{r.name}.column",
                                       self.path)
                if hit is None:
                    missing.append(f"{r.name} ({'/'.join(r.column)})")
                out[r.name] = hit
            elif r.template:
                for c in PLACEHOLDER.findall(r.template):
                    if c not in have:
                        raise MappingError(f"column {c!r} not in the file header", f"fields.{r.name}.template",
                                           self.path)
        missing += [f"attributes ({c})" for c in self.attributes if c not in have]
        return out, missing

    def convert(self, row: dict[str, str], cols: dict[str, str]) -> dict:
        rec = {}
        for r in self.rules:
            if r.value is not None:
                raw = r.value
            elif r.template is not None:
                parts = PLACEHOLDER.split(r.template)
                filled = [(row.get(p) or "").strip() if i % 2 else p for i, p in enumerate(parts)]
                raw = "".join(filled) if any(filled[1::2]) else ""
            else:
                col = cols[r.name]
                raw = (row.get(col) or "").strip() if col is not None else ""
            rec[r.name] = self._value(r, raw)
        if self.attributes:
            rec["attributes"] = {c: row[c].strip() for c in self.attributes if (row.get(c) or "").strip()}
        elif "attributes" in self.schema.field_names:
            rec["attributes"] = {}
        return rec

    def _value(self, r: FieldRule, raw):
        label = "/".join(r.column) if r.column else r.name
        if isinstance(raw, str) and r.map is not None:
            if raw in r.map:
                raw = r.map[raw]
            elif r.strict and raw != "":
                raise RowError(f"{label}: unexpected value {raw!r} (expected one of {', '.join(r.map)})")
        if raw is None or raw == "":
            if r.required:
                raise RowError(f"{label}: required value is empty")
            if r.default is not None:
                raw = r.default
            elif r.has_schema_default:
                return r.schema_default
            elif r.nullable:
                return None
            elif r.kind == "string":
                return ""
            else:
                raise RowError(f"{label}: empty, and {r.name} has no default")
        if not isinstance(raw, str):
            return raw
        try:
            if r.kind == "datetime":
                return self._datetime(raw, r.date_formats or self.date_formats)
            if r.kind in ("double", "float"):
                v = float(raw)
                if not math.isfinite(v):
                    raise ValueError
                return v
            if r.kind in ("int", "long"):
                return int(raw)
            if r.kind == "boolean":
                low = raw.lower()
                if low in TRUE or low in FALSE:
                    return low in TRUE
                raise ValueError
        except RowError as exc:
            raise RowError(f"{label}: {exc}") from None
        except ValueError:
            raise RowError(f"{label}: cannot read {raw!r} as {r.kind}") from None
        if r.symbols and raw not in r.symbols:
            raise RowError(f"{label}: {raw!r} is not a {r.name} value")
        return raw

    def _datetime(self, raw: str, formats: list[str]) -> int:
        for fmt in formats:
            try:
                dt = _fast_strptime(raw, fmt)
            except ValueError:
                continue
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=self.tz)
            return int(dt.timestamp() * 1000)
        raise RowError(f"date/time {raw!r} matches none of {formats}")


_DIRECTIVES = {"Y": r"(?P<Y>\d{4})", "m": r"(?P<m>\d{1,2})", "d": r"(?P<d>\d{1,2})", "H": r"(?P<H>\d{1,2})",
               "I": r"(?P<I>\d{1,2})", "M": r"(?P<M>\d{1,2})", "S": r"(?P<S>\d{1,2})", "p": r"(?P<p>[AaPp][Mm])",
               "f": r"(?P<f>\d{1,6})", "%": "%"}
_compiled: dict[str, re.Pattern | None] = {}


def _fast_strptime(raw: str, fmt: str) -> datetime:
    """strptime for the numeric formats exports use, as a regex compiled once per format.

    `datetime.strptime` costs ~25 µs a call (locale lookups, its own regex cache) and a
    work-order row has three or four dates: it was most of the import time. Formats with
    other directives (%b, %j, ...) fall back to strptime.
    """
    rx = _compiled.get(fmt, False)
    if rx is False:
        parts, ok, i = [], True, 0
        while i < len(fmt):
            if fmt[i] == "%" and i + 1 < len(fmt):
                d = _DIRECTIVES.get(fmt[i + 1])
                if d is None:
                    ok = False
                    break
                parts.append(d)
                i += 2
            else:
                parts.append(re.escape(fmt[i]))
                i += 1
        rx = _compiled[fmt] = re.compile("".join(parts) + r"\Z") if ok else None
    if rx is None:
        return datetime.strptime(raw, fmt)
    m = rx.match(raw)
    if m is None:
        raise ValueError(f"{raw!r} does not match {fmt!r}")
    g = m.groupdict()
    hour = int(g.get("H") or 0)
    if g.get("I") is not None:
        hour = int(g["I"]) % 12 + (12 if (g.get("p") or "").upper() == "PM" else 0)
    return datetime(int(g["Y"]), int(g.get("m") or 1), int(g.get("d") or 1), hour, int(g.get("M") or 0),
                    int(g.get("S") or 0), int((g.get("f") or "0").ljust(6, "0")))


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    imported: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.file}: {self.rows} rows, {self.imported} imported, {len(self.bad)} bad "
                f"in {self.seconds:.1f}s")


def _progress(path: Path, enabled: bool | None):
    """A tqdm bar over lines on stderr for large files (or when asked); None otherwise."""
    size = path.stat().st_size
    if enabled is False or (enabled is None and (size < 5 << 20 or not sys.stderr.isatty())):
        return None
    from tqdm import tqdm
    with open(path, "rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return tqdm(total=lines, unit=" lines", desc=path.name, file=sys.stderr, mininterval=0.5)


def import_csv(path: str | Path, mapping: Mapping, publish: Publish, intake: Intake | None = None,
               progress: bool | None = None) -> ImportReport:
    """Import one file; every data row ends up imported or in `report.bad` with its line number."""
    path = Path(path)
    intake = intake or Intake("csv_import", publish)
    report = ImportReport(str(path))
    t0 = time.perf_counter()
    bar = _progress(path, progress)
    seen: dict[str, int] = {}
    try:
        # undecodable bytes become U+FFFD and fail only their own row (a strict decoder would
        # fail the whole rest of the file at the first bad byte)
        with open(path, newline="", encoding=mapping.encoding, errors="replace") as fh:
            reader = csv.DictReader(fh, delimiter=mapping.delimiter)
            header = reader.fieldnames or []
            cols, report.missing_columns = mapping.columns([h.strip() for h in header])
            if report.missing_columns:
                log.warning("%s: optional columns not in the file, defaults used: %s", path,
                            ", ".join(report.missing_columns))
            reader.fieldnames = [h.strip() for h in header]
            last_line = reader.line_num
            while True:
                start = last_line + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    report.rows += 1
                    report.bad.append((start, f"unreadable row: {exc}"))
                    intake.count("bad_row")
                    last_line = reader.line_num
                    continue
                if bar is not None:
                    bar.update(reader.line_num - last_line)
                last_line = reader.line_num
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line: not a row
                report.rows += 1
                try:
                    if None in row:
                        raise RowError(f"{len(header) + len(row[None])} columns, header has {len(header)}")
                    if any("\ufffd" in v for v in row.values() if v):
                        raise RowError(f"bytes that are not valid {mapping.encoding}")
                    rec = mapping.convert(row, cols)
                    if mapping.key:
                        k = rec.get(mapping.key)
                        if k in seen:
                            raise RowError(f"duplicate {mapping.key} {k!r} (first at line {seen[k]})")
                        seen[k] = start
                    if not intake.emit(rec):
                        raise RowError(intake.last_error or "rejected by the sink")
                except RowError as exc:
                    report.bad.append((start, str(exc)))
                    intake.count("bad_row")
                    continue
                report.imported += 1
                intake.count("imported")
    finally:
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    p = common_parser("Import CSV work-order exports through a column mapping")
    p.add_argument("--mapping", required=True, help="mapping file, or a shipped one: nyc311, hotline12345")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for files over 5 MB on a terminal)")
    p.add_argument("files", nargs="+")
    p.set_defaults(metrics_port=-1)
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        mapping = Mapping.load(args.mapping)
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    connector, publish = connect(args)
    metrics = serve_metrics(args.metrics_port)
    intake = Intake("csv_import", publish)
    bad_total = 0
    try:
        for f in args.files:
            try:
                report = import_csv(f, mapping, publish, intake, args.progress)
            except MappingError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            for line, reason in report.bad:
                print(f"{f}:{line}: {reason}", file=sys.stderr)
            print(report.summary(), flush=True)
            bad_total += len(report.bad)
        connector.flush()
    finally:
        if metrics is not None:
            metrics.shutdown()
    return 1 if bad_total else 0


if __name__ == "__main__":
    raise SystemExit(main())
