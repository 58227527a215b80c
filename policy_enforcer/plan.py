"""Compile a contract into a Plan and run it over batches of decoded records.

Why a compiled plan: the enforcement runner calls ``Plan.evaluate`` for every batch of
every active contract, so everything that depends only on the contract is done once here:
the purpose decision, the polygon index, the pseudonym key schedule, the output schema,
and one generated Python function (``step``) that tests every per-record constraint and
builds the delivered dict with every duty inlined (its output goes straight into the
output schema's C encoder, ``schemas/native.py``). Generated code avoids a function call and
a config look-up per rule per record; the generator only embeds ``repr`` of field names validated against the
schema and refers to every policy value through a named constant.

The plan names no constraint or duty: each compiles itself (``constraints/``,
``duties/``, looked up by ``type``) into code fragments, constants, a processing-time
window or a purpose decision, and the plan joins what they return.

Evaluation order per record: constraints in policy order (the first failing one is the
drop rule), then duties. Constraints see the source record (a geofence tests the exact
position, before rounding). A record a rule cannot process (wrong value type, missing
field, not a dict) is rejected, naming that rule; the slow path that finds it runs only
for such records.

A delivery is the whole Kafka record, and all of it comes from here (``Plan.deliver``),
because a consumer observes all of it: the payload; the key, taken from the *output* value
of the product's key field (pseudonymised when the contract pseudonymises it, absent when
the contract withholds it), so one subject stays one key within the contract; and the
headers (``schemas/headers.py``), whose provenance values are per contract
(``policy_enforcer/provenance.py``). The timestamp is the batch's processing time, set by
the runner: nothing of the record, and the same whichever contract. Nothing of the
provider's record reaches the consumer but through the plan.
"""

from __future__ import annotations

import hashlib
import json
from itertools import repeat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from schemas import RecordSchema
from schemas import headers as H
from schemas.native import Unsupported, fields_encoder

from .blocks import Compiling
from .constraints import CompiledConstraint
from .constraints.purpose import RULE_PURPOSE  # noqa: F401 - the purpose block's rule id, re-exported
from .duties import FieldOutput, compile_fields
from .duties.pseudonymise import derive_contract_key
from .errors import PolicyError
from .lineage import ProductTerms
from .output_schema import build_output_schema
from .provenance import SourceRefs, TraceIds, delivery_key, source_blocks, trace_blocks
from .policy import PROHIBITIONS, check_policy

DELIVER = "deliver"
DROP = "drop"
REJECT = "reject"

# where Plan.deliver puts the per-record provenance in every delivery's header list, after
# cm.contract and cm.schema (the seal stage reads them there)
SOURCE_REF_AT, TRACE_AT = 2, 3

RULE_NOT_BEFORE = "validity:not_before"
RULE_NOT_AFTER = "validity:not_after"
RULE_NOT_A_RECORD = "input:not-a-record"


@dataclass
class ContractTerms:
    """What compile_plan needs of a contract (the topology's ContractSpec, flattened).

    ``purposes`` are the consumer's declared purposes; ``policy`` is the policy document
    (see policy.py); the validity window is in epoch milliseconds, either end open."""

    contract_id: str
    version: int
    consumer_id: str
    purposes: list[str]
    policy: dict
    not_before_ms: int | None = None
    not_after_ms: int | None = None


@dataclass
class BatchResult:
    """Decisions for one batch, as parallel lists in input order (cheap to build and to
    walk for the runner):

    - ``decisions[i]``: DELIVER, DROP or REJECT;
    - ``records[i]``: the transformed record to deliver, None otherwise;
    - ``rules[i]``: None for DELIVER, else the rule id, e.g. ``constraint:geofence``;
    - ``messages``: index -> why, for REJECT only (sparse);
    - ``counts``: ``deliver``, ``drop:<rule>``, ``reject:<rule>`` -> number of records
      (only non-zero entries), ready for a ComplianceEvent;
    - ``keys[i]``: the delivery's Kafka key (bytes, or None when it has none or is not
      delivered);
    - ``headers[i]``: the delivery's headers (``Plan.deliver`` only).
    """

    decisions: list[str]
    records: list[dict | None]
    rules: list[str | None]
    counts: dict[str, int]
    messages: dict[int, str] = field(default_factory=dict)
    keys: list[bytes | None] | None = None
    headers: list[list | None] | None = None

    def __len__(self) -> int:
        return len(self.decisions)

    def __iter__(self):
        return iter(zip(self.decisions, self.records, self.rules))

    def delivered(self) -> list[tuple[int, dict]]:
        """(input index, transformed record) of every delivered record."""
        return [(i, r) for i, r in enumerate(self.records) if r is not None]


def _policy_digest(policy: Any) -> str:
    text = json.dumps(policy, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + ln for ln in lines]


def key_bytes(value: Any) -> bytes | None:
    """A delivered key field's value as the Kafka key."""
    if value is None:
        return None
    if value.__class__ is str:
        return value.encode()
    if value.__class__ is int:
        return b"%d" % value
    return str(value).encode()


class SourceBatch:
    """One source partition's admitted records of a batch, as every contract's plan reads
    them: decoded records, their payloads, offsets and the providers' traceparents. What
    the plans share (the provenance plaintext; the outputs of plans with one ``output_key``;
    the decisions and unkeyed fields of plans with one of ``split_keys``) is computed once,
    on first use. ``split_keys`` are those of two plans or more (``shared_split_keys``): a
    keyed plan alone takes its own one-pass path, since a split would share nothing and cost
    it a little (bench/RESULTS.md, "A lone keyed plan on its own path")."""

    __slots__ = ("partition", "records", "values", "offsets", "traceparents", "split_keys", "_sources", "_traces",
                 "outputs")

    def __init__(self, partition: int, records: list[dict], values: list[bytes], offsets: list[int],
                 traceparents: list[bytes | None], split_keys: frozenset = frozenset()):
        self.partition = partition
        self.records = records
        self.values = values
        self.offsets = offsets
        self.traceparents = traceparents
        self.split_keys = split_keys
        self._sources = self._traces = None
        # (output_key, now_ms) -> (header, result); ("split", split_key, now_ms) -> what Plan._split returns
        self.outputs: dict[tuple, tuple | None] = {}

    def sources(self) -> bytes:
        if self._sources is None:
            self._sources = source_blocks(self.partition, self.offsets)
        return self._sources

    def traces(self) -> bytes:
        if self._traces is None:
            self._traces = trace_blocks(self.traceparents, self.sources())
        return self._traces


class Plan:
    """A contract compiled for one product schema. Build with ``compile_plan``."""

    def __init__(self, terms: ContractTerms, schema: RecordSchema, pseudonym_key: bytes,
                 scrubber: Callable[[str], str] | None = None, product: ProductTerms | None = None):
        if not isinstance(terms.contract_id, str) or not terms.contract_id:
            raise PolicyError("contract_id must be a non-empty string", "contract.contract_id")
        product = product or ProductTerms()
        checked = check_policy(terms.policy, schema, product)
        self.contract_id = terms.contract_id
        self.version = terms.version
        self.consumer_id = terms.consumer_id
        self.source_schema = schema
        self.policy_digest = _policy_digest(terms.policy)
        self._checked = checked

        ctx = Compiling(list(terms.purposes or []), pseudonym_key, scrubber)
        compiled: list[CompiledConstraint] = [c.compile(ctx, path, f"_k{i}")
                                              for i, (path, c) in enumerate(checked.constraints)]
        decides_keyed = ctx.keyed  # a constraint read the contract's key: its decisions are its own
        # decided here, once: the first constraint that blocks the contract (a purpose outside the allowed)
        self.blocked_rule, self.blocked_reason = next((c.blocked for c in compiled if c.blocked), (None, None))
        # validity window: the contract's and the constraints', intersected
        lows = [v for v in [terms.not_before_ms, *(c.not_before_ms for c in compiled)] if v is not None]
        highs = [v for v in [terms.not_after_ms, *(c.not_after_ms for c in compiled)] if v is not None]
        self.not_before_ms = max(lows) if lows else None
        self.not_after_ms = min(highs) if highs else None
        self._described = [c for c in compiled if c.section is not None]
        self._constraints = [c for c in compiled if c.code]  # the per-record ones
        self._fields: list[FieldOutput] = compile_fields(checked.delivered, checked.fields, checked.duties,
                                                         checked.context_scrub, ctx)
        self.output_schema: RecordSchema = build_output_schema(schema, self.contract_id, self._fields)
        # equal for plans that decide and deliver the same for every record (payloads but
        # for the output schema's name in their header): None for a plan whose outputs are
        # its own because a block read the contract's key (pseudonyms)
        shared_key = (schema.fingerprint, self.policy_digest, tuple(ctx.purposes), product, scrubber,
                      self.not_before_ms, self.not_after_ms, len(self.output_schema.header))
        self.output_key = None if ctx.keyed else shared_key
        # a keyed plan whose key reaches only fields that are each one function of their own
        # source field (pseudonyms) decides, and delivers every other field, as any contract
        # with the same policy does: that part is computed once per slice for all of them
        # (``split_key``) and only those fields, its own, per contract (``_assemble``). The
        # usual data-space case: one offer, many consumers' agreements, a key each.
        self.split_key = shared_key if ctx.keyed and not decides_keyed else None
        # a plan that copies every field unchanged, in order, delivers the source body as it is
        self.passthrough = [(f.expr, f.as_string) for f in self._fields] == [
            (f"r[{n!r}]", False) for n in schema.field_names]
        # the rest of the Kafka record: key and headers
        names = [f.name for f in self._fields]
        self._key_at = names.index(product.key_field) if product.key_field in names else None
        self.source_refs = SourceRefs(pseudonym_key)
        self.trace_ids = TraceIds(pseudonym_key)
        self.delivery_key = delivery_key(pseudonym_key)  # of the per-record tags (processors/stages/seal.py)
        self.static_headers = [(H.CONTRACT, H.contract_value(self.contract_id, self.version)),
                               (H.SCHEMA, self.output_schema.fingerprint.encode())]
        (self._make_step, self._make_probes, self._make_encoding_step, self._make_split_step, self._assemble,
         self.source_code) = self._generate()
        if self._assemble is None:
            self.split_key = None

    # ---- code generation -----------------------------------------------------------------

    def _generate(self):
        ns: dict[str, Any] = {"__builtins__": {"round": round, "max": max, "None": None}}
        batch: list[str] = []
        checks: list[str] = []
        for c in self._constraints:
            ns.update(c.consts)
            batch += c.batch_code
            checks += c.code
        for f in self._fields:
            ns.update(f.consts)
        body = ", ".join(f"{f.name!r}: {f.expr}" for f in self._fields)
        lines = ["def _make_step(now_ms):", *_indent(batch, 4), "    def step(r):",
                 *_indent(checks, 8), f"        return {{{body}}}", "    return step", ""]
        # probes: each constraint and each field on its own, to name what a bad record broke
        lines += ["def _make_probes(now_ms):", *_indent(batch, 4), "    probes = []"]
        for i, c in enumerate(self._constraints):
            lines += [f"    def c{i}(r):", *_indent(c.code, 8), "        return None", f"    probes.append(c{i})"]
        for i, f in enumerate(self._fields):
            lines += [f"    def f{i}(r):", f"        {f.expr}", "        return None", f"    probes.append(f{i})"]
        lines += ["    return probes", ""]
        # the same decisions, delivering the encoded output (single-object header + body) in one
        # pass: each field's expression goes straight into the output schema's encoder, or, for
        # a passthrough plan, the source body is reused as it is (the same bytes by construction)
        try:
            encode = fields_encoder(self.output_schema.definition, self.output_schema.header)
        except Unsupported:
            encode = None
        if encode is not None:
            ns.update(_enc=encode, _OH=self.output_schema.header, _SHL=len(self.source_schema.header),
                      _kb=key_bytes)
            args = [f.expr for f in self._fields]
            key = "None"
            if self._key_at is not None:  # the key is the output value of the key field
                if self.passthrough:
                    key = f"_kb({self._fields[self._key_at].expr})"
                else:
                    args[self._key_at] = f"(_kv := {args[self._key_at]})"
                    # key_bytes written out where the output type says what the value is
                    kt = self.output_schema.definition["fields"][self._key_at]["type"]
                    key = {"string": "_kv.encode()", "int": 'b"%d" % _kv', "long": 'b"%d" % _kv'}.get(
                        kt if isinstance(kt, str) else None, "_kb(_kv)")
            payload = "_OH + v[_SHL:]" if self.passthrough else f"_enc({', '.join(args)})"
            lines += ["def _make_encoding_step(now_ms):", *_indent(batch, 4), "    def step(r, v):",
                      *_indent(checks, 8), f"        return ({payload}, {key})", "    return step", ""]
            if self.split_key is not None:
                lines += self._split_code(ns, batch, checks)
        source = "\n".join(lines)
        exec(compile(source, f"<policy plan {self.contract_id} v{self.version}>", "exec"), ns)
        return (ns["_make_step"], ns["_make_probes"], ns.get("_make_encoding_step"), ns.get("_make_split_step"),
                ns.get("_assemble"), source)

    def _split_code(self, ns: dict, batch: list[str], checks: list[str]) -> list[str]:
        """The code of a keyed plan split in two (see ``split_key``), or none when a keyed field
        is not one function of its own source field: ``_make_split_step`` decides a record and
        returns its output's encoded runs of unkeyed fields with each keyed field's source value
        between them, and the key when it is unkeyed; ``_assemble`` makes this contract's
        (payload, key) of that tuple, computing only its keyed fields."""
        fields, definition = self._fields, self.output_schema.definition
        keyed = [i for i, f in enumerate(fields) if f.keyed]
        if not keyed:  # the key was read, but not by a field's duty: nothing known to be unkeyed
            return []
        for i in keyed:
            f, src = fields[i], f"r[{fields[i].name!r}]"
            if list(f.consts) != [f"_d{i}"] or f.expr not in (f"_d{i}({src})",
                                                              f"(None if (v{i} := {src}) is None else _d{i}(v{i}))"):
                return []
        parts: list[str] = []  # the split step's tuple, in output order
        own: list[str] = []    # the assembled payload's pieces
        cuts = [-1, *keyed, len(fields)]
        key_keyed = self._key_at in keyed
        for n, (a, b) in enumerate(zip(cuts, cuts[1:])):
            if b - a > 1:  # the unkeyed fields a+1 .. b-1, encoded in one call
                ns[f"_S{n}"] = fields_encoder(definition, b"", slice(a + 1, b))
                args = [f"(_kv := {f.expr})" if j == self._key_at else f.expr
                        for j, f in enumerate(fields[a + 1:b], a + 1)]
                own.append(f"t[{len(parts)}]")
                parts.append(f"_S{n}({', '.join(args)})")
            if b < len(fields):  # the keyed field b: checked (the function raises on what it cannot take)
                src = f"r[{fields[b].name!r}]"
                ns[f"_K{b}"] = fields_encoder(definition, b"", slice(b, b + 1))
                value = f"(None if (_x := t[{len(parts)}]) is None else _d{b}(_x))"
                own.append(f"_K{b}((_kv := {value}))" if b == self._key_at else f"_K{b}({value})")
                parts.append(f"({fields[b].expr}, {src})[1]")
        if self._key_at is not None and not key_keyed:
            parts.append("_kb(_kv)")
            key = f"t[{len(parts) - 1}]"
        else:
            key = "_kb(_kv)" if key_keyed else "None"
        return ["def _make_split_step(now_ms):", *_indent(batch, 4), "    def step(r, v):", *_indent(checks, 8),
                f"        return ({', '.join(parts)},)", "    return step", "",
                "def _assemble(t):", f"    return (_OH + {' + '.join(own)}, {key})", ""]

    def _diagnose(self, record: Any, now_ms: int, exc: Exception) -> tuple[str, str]:
        if not isinstance(record, dict):
            return RULE_NOT_A_RECORD, f"expected a dict record, got {type(record).__name__}"
        probes = self._make_probes(now_ms)
        names = [(c.rule, None) for c in self._constraints] + [(f.rule or f"field:{f.name}", f.name)
                                                               for f in self._fields]
        for probe, (rule, fname) in zip(probes, names):
            try:
                if probe(record) is not None:
                    return "", ""  # a constraint drops it: not our culprit (cannot happen before the raiser)
            except KeyError as e:
                return rule, f"missing field {e.args[0]!r}"
            except Exception as e:  # noqa: BLE001 - any error of a rule on this record rejects it
                what = f"field {fname!r}: " if fname else ""
                return rule, f"{what}{type(e).__name__}: {e}"
        return "input:unprocessable", f"{type(exc).__name__}: {exc}"

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(self, records: list[dict], now_ms: int) -> BatchResult:
        """Decide every record of a batch; ``now_ms`` is the batch's processing time. The
        delivered records are dicts in the output schema, with their keys."""
        n = len(records)
        batch_rule = self._batch_rule(now_ms)
        if batch_rule is not None:
            return BatchResult([DROP] * n, [None] * n, [batch_rule] * n,
                               {f"drop:{batch_rule}": n} if n else {}, keys=[None] * n)
        step = self._make_step(now_ms)
        try:
            results = [step(r) for r in records]
        except Exception:  # noqa: BLE001 - some record is bad: redo the batch record by record
            return self._keys(self._evaluate_slow(records, now_ms, step))
        return self._keys(_collect(results, dict))

    def _keys(self, result: BatchResult) -> BatchResult:
        """Fill the keys of a result whose records are output dicts."""
        kname = self._fields[self._key_at].name if self._key_at is not None else None
        result.keys = [None if r is None or kname is None else key_bytes(r[kname]) for r in result.records]
        return result

    def evaluate_encoded(self, records: list[dict], values: list[bytes], now_ms: int) -> BatchResult:
        """Like ``evaluate``, but each delivered record comes encoded in the output schema
        (single-object header + Avro body, the bytes the delivery topic gets); ``values[i]``
        is the source payload ``records[i]`` was decoded from. A batch with a record the
        one-pass step cannot take is decided by ``evaluate`` and encoded after it."""
        if len(records) != len(values):
            raise ValueError("records and values differ in length")
        if self._make_encoding_step is None or self._batch_rule(now_ms) is not None:
            return self._encode(self.evaluate(records, now_ms))
        step = self._make_encoding_step(now_ms)
        try:
            results = [step(r, v) for r, v in zip(records, values)]
        except Exception:  # noqa: BLE001 - bad record or a value the encoder refuses: the general path
            return self._encode(self.evaluate(records, now_ms))
        return _collect(results, tuple)

    def deliver(self, batch: SourceBatch, now_ms: int) -> BatchResult:
        """The whole Kafka records this contract's consumer receives from one partition's
        batch: ``evaluate_encoded`` plus each delivery's headers (static ones first, then
        the per-contract source reference and traceparent). A plan whose ``output_key``
        an earlier plan of the batch had takes that plan's outputs, under its own header."""
        result = self._outputs(batch, now_ms)
        if result.counts.get(DELIVER):
            sources = batch.sources()
            refs = self.source_refs.seal(sources)
            traces = self.trace_ids.seal(batch.traces(), sources)
            (c, s), src, trace = self.static_headers, H.SOURCE_REF, H.TRACE
            # one list per delivery, assembled in C (map/zip): this runs once per delivery
            headers = list(map(list, zip(repeat(c), repeat(s), zip(repeat(src), refs), zip(repeat(trace), traces))))
            if result.counts[DELIVER] != len(headers):
                headers = [None if payload is None else h for payload, h in zip(result.records, headers)]
            result.headers = headers
        else:
            result.headers = [None] * len(result.records)
        return result

    def _outputs(self, batch: SourceBatch, now_ms: int) -> BatchResult:
        if self.output_key is None:
            if self.split_key in batch.split_keys and self._batch_rule(now_ms) is None:
                shared = self._split(batch, now_ms)
                if shared is not None:
                    return self._assembled(*shared)
            return self.evaluate_encoded(batch.records, batch.values, now_ms)
        shared = batch.outputs.get((self.output_key, now_ms))
        if shared is None:
            shared = batch.outputs[(self.output_key, now_ms)] = (
                self.output_schema.header, self.evaluate_encoded(batch.records, batch.values, now_ms))
        header, first = shared
        own, n = self.output_schema.header, len(header)
        # a list of its own: quota and quarantine take records out of it (counts alike)
        records = (list(first.records) if own == header else
                   [None if payload is None else own + payload[n:] for payload in first.records])
        return BatchResult(first.decisions, records, first.rules, dict(first.counts), first.messages, first.keys)

    def _split(self, batch: SourceBatch, now_ms: int) -> tuple | None:
        """The split step's results for the slice, shared by every plan with this split_key:
        (tuples, decisions, rules, counts), or None when a record raised (then each plan takes
        its own path, which names the rule the record broke)."""
        at = ("split", self.split_key, now_ms)
        if at not in batch.outputs:
            step = self._make_split_step(now_ms)
            try:
                results = [step(r, v) for r, v in zip(batch.records, batch.values)]
            except Exception:  # noqa: BLE001 - a bad record: the general path decides it
                batch.outputs[at] = None
            else:
                batch.outputs[at] = (results, *_decide(results, tuple)[:3])
        return batch.outputs[at]

    def _assembled(self, results: list, decisions: list, rules: list, counts: dict) -> BatchResult:
        assemble = self._assemble
        outs = [None if t is None else assemble(t) for t in results]
        payloads, keys = _payloads_and_keys(outs, counts.get(DELIVER) == len(outs))
        return BatchResult(decisions, payloads, rules, dict(counts), {}, keys)

    def _encode(self, result: BatchResult) -> BatchResult:
        encode = self.output_schema.encode
        result.records = [None if r is None else encode(r) for r in result.records]
        return result

    def _evaluate_slow(self, records: list, now_ms: int, step) -> BatchResult:
        decisions, out, rules, counts, messages = [], [], [], {}, {}
        for i, r in enumerate(records):
            try:
                x = step(r)
            except Exception as exc:  # noqa: BLE001
                rule, msg = self._diagnose(r, now_ms, exc)
                rule = rule or "input:unprocessable"
                decisions.append(REJECT)
                out.append(None)
                rules.append(rule)
                messages[i] = msg
                key = f"reject:{rule}"
            else:
                if x.__class__ is dict:
                    decisions.append(DELIVER)
                    out.append(x)
                    rules.append(None)
                    key = DELIVER
                else:
                    decisions.append(DROP)
                    out.append(None)
                    rules.append(x)
                    key = f"drop:{x}"
            counts[key] = counts.get(key, 0) + 1
        return BatchResult(decisions, out, rules, counts, messages)

    def _batch_rule(self, now_ms: int) -> str | None:
        if self.blocked_rule is not None:
            return self.blocked_rule
        if self.not_before_ms is not None and now_ms < self.not_before_ms:
            return RULE_NOT_BEFORE
        if self.not_after_ms is not None and now_ms > self.not_after_ms:
            return RULE_NOT_AFTER
        return None

    # ---- audit -------------------------------------------------------------------------------

    def describe(self) -> dict:
        """What this plan does, for people and for the compliance ledger (JSON-able)."""
        checked = self._checked
        dropped = sorted({f for _, d in checked.duties for f in d.withholds()})
        return {
            "contract_id": self.contract_id,
            "version": self.version,
            "consumer_id": self.consumer_id,
            "source_schema": self.source_schema.full_name,
            "source_fingerprint": self.source_schema.fingerprint,
            "output_schema": self.output_schema.full_name,
            "output_fingerprint": self.output_schema.fingerprint,
            "policy_digest": self.policy_digest,
            "description": checked.document.description,
            "delivers": self.blocked_rule is None,
            "blocked": None if self.blocked_rule is None else {"rule": self.blocked_rule, "reason": self.blocked_reason},
            "purpose": [c.description() for c in self._described if c.section == "purpose"],
            "validity": {"not_before_ms": self.not_before_ms, "not_after_ms": self.not_after_ms,
                         "rules": [RULE_NOT_BEFORE, RULE_NOT_AFTER]},
            "fields": list(checked.delivered),
            "key": self._fields[self._key_at].name if self._key_at is not None else None,
            "dropped_fields": dropped,
            "constraints": [c.description() for c in self._described if c.section == "constraints"],
            "duties": ([{"rule": f.rule, "path": f.path, "field": f.name, "text": f.text}
                        for f in self._fields if f.rule]
                       + [entry for p, d in checked.duties for entry in d.describe(p)]),
            "prohibitions": [{"type": p.type, "text": PROHIBITIONS[p.type], "note": p.note}
                             for p in checked.prohibitions],
        }


def plan_for(contract: dict, product: dict, master_secret: bytes) -> Plan:
    """The one adapter from control records to a plan, shared by the live runner and the
    dry-run sandbox so a preview is the live path: ``contract`` is a cm.control.contracts
    record (schemas/Contract.avsc), ``product`` its product's cm.control.catalog record
    (schemas/DataProduct.avsc), ``master_secret`` the mesh's (streams.keyring.mesh_secret)."""
    import schemas  # noqa: PLC0415 - the product's record schema, by the name the catalog holds
    terms = ContractTerms(
        contract_id=contract["contract_id"], version=contract["version"], consumer_id=contract["consumer_id"],
        purposes=list(contract["purposes"]), policy=json.loads(contract["policy_json"]),
        not_before_ms=contract["not_before_ms"], not_after_ms=contract["not_after_ms"])
    return compile_plan(terms, schemas.load(product["schema_name"]),
                        derive_contract_key(master_secret, contract["contract_id"]),
                        product=ProductTerms.from_catalog(product))


def shared_split_keys(plans: Iterable[Plan]) -> frozenset:
    """The ``split_key`` values two or more of ``plans`` have: the ones worth a split step
    (``SourceBatch.split_keys``)."""
    seen, shared = set(), set()
    for plan in plans:
        if plan.split_key is not None:
            (shared if plan.split_key in seen else seen).add(plan.split_key)
    return frozenset(shared)


def compile_plan(terms: ContractTerms, schema: RecordSchema, pseudonym_key: bytes,
                 scrubber: Callable[[str], str] | None = None, product: ProductTerms | None = None) -> Plan:
    """Compile ``terms`` for records of ``schema``; raise PolicyError naming the path.

    ``pseudonym_key`` is the contract's key (see ``derive_contract_key``); ``scrubber`` is
    the text -> text function of scrub_pii duties (default ``policy_enforcer.pii.scrub``,
    imported only if the policy scrubs); ``product`` is what the catalog says about the
    product's key, event time and identifier lineage."""
    return Plan(terms, schema, pseudonym_key, scrubber, product)


def _collect(results: list, delivered: type) -> BatchResult:
    """A BatchResult from one step result per record: the output (of class `delivered`:
    a dict, or a (payload, key) tuple from the encoding step) or the id of the
    rule that dropped it (a str). Fills `results` in place."""
    decisions, rules, counts, dropped = _decide(results, delivered)
    if delivered is not tuple:
        return BatchResult(decisions, results, rules, counts)
    payloads, keys = _payloads_and_keys(results, not dropped)
    return BatchResult(decisions, payloads, rules, counts, keys=keys)


def _payloads_and_keys(outputs: list, all_delivered: bool) -> tuple[list, list]:
    """The payloads and the keys of (payload, key) outputs, None where nothing is delivered
    (one C-level unzip when every record is)."""
    if all_delivered and outputs:
        payloads, keys = map(list, zip(*outputs))
        return payloads, keys
    return [None if x is None else x[0] for x in outputs], [None if x is None else x[1] for x in outputs]


def _decide(results: list, delivered: type) -> tuple[list, list, dict, int]:
    """(decisions, rules, counts, how many dropped) of step results (see ``_collect``); the
    dropped ones become None in `results`."""
    n = len(results)
    counts: dict[str, int] = {}
    decisions = rules = None
    dropped = 0
    for i, x in enumerate(results):
        if x.__class__ is not delivered:
            if decisions is None:
                decisions = [DELIVER] * n
                rules = [None] * n
            decisions[i] = DROP
            rules[i] = x
            results[i] = None
            key = "drop:" + x
            counts[key] = counts.get(key, 0) + 1
            dropped += 1
    if decisions is None:
        decisions = [DELIVER] * n
        rules = [None] * n
    if n - dropped:
        counts[DELIVER] = n - dropped
    return decisions, rules, counts, dropped
