"""Identifier lineage: what a product declares about its identifiers, and what it means for a
contract.

Why: a duty on a field protects only that field. Telemetry builds ``flight_id`` from the
serial number (``<serial>-<n>``), and a work order's free text repeats the caller's phone
number; a contract that pseudonymises the serial but grants the flight id, or masks the
phone but grants the text, hands the identifier over anyway. The catalog therefore
declares, per product, its identifiers and the fields that are derived from them or may
contain them, and every contract is checked against that:

- an identifier is *protected* by a contract when it is not delivered as it is (withheld,
  dropped, masked, pseudonymised, generalised or scrubbed);
- a field *derived* from a protected identifier may only be withheld or treated by a duty
  whose ``covers_derived`` says so (pseudonymised, or masked when the identifier itself is
  masked; see ``duties/``): anything else is refused when the contract is compiled (at
  ``citymesh apply``), naming both fields. Refused rather than fixed silently, because a
  contract states what its consumer receives; quietly changing a delivered field's type
  would break the consumer's schema;
- a free-text field that *may contain* a protected identifier is scrubbed whenever it is
  delivered in clear (automatically: the text keeps its type), and the scrubbing removes
  the record's own identifier values first (``context_scrubber``), so the identifier goes
  even in a format the PII detector does not know.

Identifiers derived from a derived field are checked in the derived field's own
declaration (declare ``flight_id`` as an identifier too, with its own ``derived``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

from schemas import RecordSchema

from .errors import PolicyError

CLEAR = "clear"
WITHHELD = "withheld"


@dataclass(frozen=True)
class Identifier:
    """One identifier field of a product and the fields that carry it onwards."""

    field: str
    derived: tuple[str, ...] = ()
    appears_in: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict) -> "Identifier":
        return cls(d["field"], tuple(d.get("derived") or ()), tuple(d.get("appears_in") or ()))

    def to_dict(self) -> dict:
        return {"field": self.field, "derived": list(self.derived), "appears_in": list(self.appears_in)}


@dataclass(frozen=True)
class ProductTerms:
    """What the catalog says about a product's records that every contract on it obeys:
    which field keys the Kafka record, which one holds the event time, and the lineage of
    its identifiers."""

    key_field: str | None = None
    event_time_field: str | None = None
    identifiers: tuple[Identifier, ...] = field(default_factory=tuple)

    @classmethod
    def from_catalog(cls, entry: dict) -> "ProductTerms":
        """From a cm.control.catalog record (schemas/DataProduct.avsc)."""
        import json
        raw = entry.get("identifiers_json")
        ids = tuple(Identifier.from_dict(d) for d in json.loads(raw)) if raw else ()
        return cls(entry.get("key_field"), entry.get("event_time_field"), ids)


def check_identifiers(identifiers: Iterable[Identifier], schema: RecordSchema, path: str = "identifiers") -> None:
    """Every named field exists; free text is a string; nothing is declared twice."""
    from .schema_fields import field_types
    fields = field_types(schema)
    seen: set[str] = set()
    for i, ident in enumerate(identifiers):
        here = f"{path}[{i}]"
        if ident.field not in fields:
            raise PolicyError(f"unknown field {ident.field!r} in {schema.full_name}", f"{here}.field")
        if ident.field in seen:
            raise PolicyError(f"identifier {ident.field!r} is declared twice", f"{here}.field")
        seen.add(ident.field)
        for attr in ("derived", "appears_in"):
            for j, name in enumerate(getattr(ident, attr)):
                if name not in fields:
                    raise PolicyError(f"unknown field {name!r} in {schema.full_name}", f"{here}.{attr}[{j}]")
                if name == ident.field:
                    raise PolicyError(f"{name!r} cannot be {attr.replace('_', ' ')} itself", f"{here}.{attr}[{j}]")
                if attr == "appears_in" and fields[name].base != "string":
                    raise PolicyError(f"field {name!r} is {fields[name].label}; only text can contain an "
                                      "identifier", f"{here}.{attr}[{j}]")


def treatments(delivered: Iterable[str], duties: dict[str, Any]) -> Callable[[str], str]:
    """field -> CLEAR, WITHHELD or the type of the duty that transforms it."""
    out = set(delivered)

    def of(name: str) -> str:
        if name not in out:
            return WITHHELD
        d = duties.get(name)
        return CLEAR if d is None else d.type

    return of


def check_contract(identifiers: Iterable[Identifier], delivered: list[str], duties: dict[str, tuple[str, Any]],
                   fields_path: str) -> dict[str, list[str]]:
    """Refuse a contract that leaks a protected identifier through a derived field; return
    free-text field -> the protected identifiers it must be scrubbed of."""
    of = treatments(delivered, {f: d for f, (_, d) in duties.items()})
    scrub: dict[str, list[str]] = {}
    for ident in identifiers:
        how = of(ident.field)
        if how == CLEAR:
            continue
        for name in ident.derived:
            got = of(name)
            if got == WITHHELD or (got != CLEAR and duties[name][1].covers_derived(how)):
                continue
            where = duties[name][0] + ".field" if name in duties else fields_path
            verb = "withholds" if how == WITHHELD else duties[ident.field][1].verb or how
            raise PolicyError(f"field {name!r} is derived from identifier {ident.field!r}, which this contract "
                              f"{verb}, but {name!r} is delivered "
                              f"{'in clear' if got == CLEAR else 'with ' + got}: withhold or pseudonymise "
                              f"{name!r} too", where)
        for name in ident.appears_in:
            if of(name) in (CLEAR, "scrub_pii"):
                scrub.setdefault(name, []).append(ident.field)
    return scrub


_SEPARATORS = r"[\s\-.()/+]*"
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=4096)
def _value_pattern(value: str) -> re.Pattern:
    """The identifier value as it may be written in text: case-insensitive, and a number
    (6+ digits, as phone and ID numbers are) with any spacing or punctuation between digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 6 and not _LETTER.search(value):
        body = _SEPARATORS.join(digits)
        return re.compile(rf"(?<!\d){body}(?!\d)")
    return re.compile(re.escape(value), re.IGNORECASE)


def context_scrubber(scrub: Callable[[str], str], identifier_fields: list[str]) -> Callable[[str, dict], str]:
    """text, record -> the text without the record's own values of ``identifier_fields``
    (each replaced by ``[<field>]``), then through ``scrub`` (the PII detector)."""
    names = tuple(identifier_fields)

    def scrub_in_context(text: str, r: dict) -> str:
        if text.__class__ is not str:
            raise TypeError(f"expected a string, got {type(text).__name__}")
        for name in names:
            v = r[name]
            if v is None:
                continue
            s = v if v.__class__ is str else str(v)
            if len(s.strip()) >= 2:
                text = _value_pattern(s.strip()).sub(f"[{name}]", text)
        out = scrub(text)
        if out.__class__ is not str:
            raise TypeError(f"scrubber returned {type(out).__name__}, not str")
        return out

    return scrub_in_context
