"""DSP 2025-1 messages: checked against the spec's own JSON Schemas.

Why the spec's schemas and not models of our own: they are the definition of a valid
message, and checking against them (``spec/``, a verbatim copy of the schemas and JSON-LD
contexts from eclipse-dataspace-protocol-base/DataspaceProtocol, Apache-2.0; a test keeps
it equal to ../shared/fixtures/dsp) means our connector refuses exactly what the spec
refuses and answers only what another connector will accept. Every message we receive is
checked before it is acted on; every message we send or answer is checked before it leaves.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from .errors import InvalidMessage

SPEC_DIR = Path(__file__).resolve().parent / "spec"
CONTEXT = "https://w3id.org/dspace/2025/1/context.jsonld"
VERSION = "2025-1"

# message or object @type -> its schema file under spec/
SCHEMA_OF: dict[str, str] = {
    "CatalogRequestMessage": "catalog/catalog-request-message-schema.json",
    "DatasetRequestMessage": "catalog/dataset-request-message-schema.json",
    "Catalog": "catalog/catalog-schema.json",
    "Dataset": "catalog/dataset-schema.json",
    "CatalogError": "catalog/catalog-error-schema.json",
    "ContractRequestMessage": "negotiation/contract-request-message-schema.json",
    "ContractOfferMessage": "negotiation/contract-offer-message-schema.json",
    "ContractAgreementMessage": "negotiation/contract-agreement-message-schema.json",
    "ContractAgreementVerificationMessage": "negotiation/contract-agreement-verification-message-schema.json",
    "ContractNegotiationEventMessage": "negotiation/contract-negotiation-event-message-schema.json",
    "ContractNegotiationTerminationMessage": "negotiation/contract-negotiation-termination-message-schema.json",
    "ContractNegotiation": "negotiation/contract-negotiation-schema.json",
    "ContractNegotiationError": "negotiation/contract-negotiation-error-schema.json",
    "TransferRequestMessage": "transfer/transfer-request-message-schema.json",
    "TransferStartMessage": "transfer/transfer-start-message-schema.json",
    "TransferSuspensionMessage": "transfer/transfer-suspension-message-schema.json",
    "TransferCompletionMessage": "transfer/transfer-completion-message-schema.json",
    "TransferTerminationMessage": "transfer/transfer-termination-message-schema.json",
    "TransferProcess": "transfer/transfer-process-schema.json",
    "TransferError": "transfer/transfer-error-schema.json",
    "VersionResponse": "common/protocol-version-schema.json",
}


def _load(path: Path) -> dict:
    """A schema file, with its `$ref`s read as meant: three transfer schemas of 2025-1 write
    `...transfer-schema.json#definitions/X`, which is no JSON Pointer (`#/definitions/X` is)."""
    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (v.replace("#definitions/", "#/definitions/") if k == "$ref" and isinstance(v, str) else fix(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node
    return fix(json.loads(path.read_text(encoding="utf-8")))


@cache
def _registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(schema["$id"], schema)
                                   for schema in map(_load, sorted(SPEC_DIR.glob("*/*-schema.json")))])


@cache
def validator(message_type: str) -> jsonschema_rs.Draft201909Validator:
    return jsonschema_rs.Draft201909Validator(_load(SPEC_DIR / SCHEMA_OF[message_type]), registry=_registry(),
                                              offline=True)


def problems(message: Any, message_type: str) -> list[str]:
    """Why `message` is not a valid `message_type` (empty when it is), each starting with its path."""
    out = []
    for err in sorted(validator(message_type).iter_errors(message), key=lambda e: list(map(str, e.instance_path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.instance_path)
        out.append(f"{message_type}{where}: {err.message[:300]}")
    return out


def check(message: Any, message_type: str) -> dict:
    """`message` if it is a valid `message_type`, else InvalidMessage naming the first problem."""
    if not isinstance(message, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(message).__name__}", message_type)
    if message.get("@type") != message_type and message_type != "VersionResponse":
        raise InvalidMessage(f"expected @type {message_type!r}, got {message.get('@type')!r:.80}",
                             f"{message_type}.@type")
    found = problems(message, message_type)
    if found:
        raise InvalidMessage(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    return message


def outgoing(message: dict) -> dict:
    """A message we are about to send or answer with, checked: a schema-invalid answer is our bug."""
    found = problems(message, message["@type"] if "@type" in message else "VersionResponse")
    if found:
        raise AssertionError(f"citymesh built an invalid DSP message: {found}")
    return message


def envelope(message_type: str, **fields: Any) -> dict:
    """A DSP message of `message_type` with the 2025-1 context; None-valued fields left out."""
    return {"@context": [CONTEXT], "@type": message_type, **{k: v for k, v in fields.items() if v is not None}}
