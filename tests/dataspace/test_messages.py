"""The packaged DSP schemas are the spec's, and they accept the spec's own examples."""

from __future__ import annotations

import json

import pytest

from dataspace import messages
from dataspace.errors import InvalidMessage
from tests.dataspace.harness import FIXTURES

EXAMPLES = sorted(p for p in FIXTURES.glob("*/example/*.json") if "did-service" not in p.name)


def test_packaged_schemas_are_a_verbatim_copy_of_the_fixtures():
    shipped = {p.relative_to(messages.SPEC_DIR): p.read_bytes() for p in messages.SPEC_DIR.rglob("*") if p.is_file()}
    assert shipped, "no schemas shipped"
    for rel, data in shipped.items():
        assert (FIXTURES / rel).read_bytes() == data, f"{rel} differs from ../shared/fixtures/dsp"
    assert {p.relative_to(FIXTURES) for p in FIXTURES.glob("*/*-schema.json")} <= set(shipped)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_spec_example_is_valid(path):
    message = json.loads(path.read_text())
    assert messages.problems(message, message.get("@type", "VersionResponse")) == []


def test_an_invalid_message_is_refused_naming_the_field():
    bad = messages.envelope("ContractRequestMessage", consumerPid=7, offer={"@type": "Offer"})
    with pytest.raises(InvalidMessage) as err:
        messages.check(bad, "ContractRequestMessage")
    assert "ContractRequestMessage" in str(err.value)
    with pytest.raises(InvalidMessage, match="expected @type 'TransferRequestMessage'"):
        messages.check(bad, "TransferRequestMessage")
