"""EdDSA tokens and agreement signatures."""

from __future__ import annotations

import time

import pytest

from dataspace import identity
from dataspace.errors import Unauthorized
from streams import keyring


@pytest.fixture
def rings(tmp_path):
    a, _ = keyring.create(tmp_path, "alice")
    b, _ = keyring.create(tmp_path, "bob")
    return a, b, {"alice": a.public_key_hex, "bob": b.public_key_hex}


def check(token: str, keys: dict, audience: str = identity.API_AUDIENCE) -> str:
    return identity.verify_token(f"Bearer {token}", audience, keys.get)


def test_a_fresh_token_names_its_issuer(rings):
    a, _, keys = rings
    assert check(identity.issue_token(a, identity.API_AUDIENCE), keys) == "alice"


@pytest.mark.parametrize("case,words", [
    ("expired", "token expired"), ("audience", "not for urn:citymesh:api"), ("long", "at most 300 s"),
    ("forged", "does not verify with alice's registered key"), ("unknown", "is not a participant"),
    ("garbage", "not a JWT"), ("missing", "missing 'Authorization")])
def test_bad_tokens_are_refused_with_the_reason(rings, case, words):
    a, _, keys = rings
    token = {"expired": lambda: identity.issue_token(a, identity.API_AUDIENCE, now=time.time() - 600),
             "audience": lambda: identity.issue_token(a, identity.connector_audience("bob")),
             "long": lambda: identity.issue_token(a, identity.API_AUDIENCE, ttl_s=3600),
             "forged": lambda: identity.issue_token(keyring.Keyring.generate("alice"), identity.API_AUDIENCE),
             "unknown": lambda: identity.issue_token(keyring.Keyring.generate("carol"), identity.API_AUDIENCE),
             "garbage": lambda: "not.a.jwt", "missing": lambda: None}[case]()
    with pytest.raises(Unauthorized, match=words):
        identity.verify_token(None if token is None else f"Bearer {token}", identity.API_AUDIENCE, keys.get)


def test_agreement_signatures_cover_the_canonical_json(rings):
    a, b, keys = rings
    agreement = {"@id": "urn:uuid:1", "@type": "Agreement", "permission": [{"action": "use"}], "n": 1.5,
                 "assigner": "alice", "assignee": "bob"}
    sig = identity.sign_agreement(a, agreement)
    reordered = dict(reversed(list(agreement.items())))  # JCS: key order does not matter
    assert identity.verify_agreement(keys["alice"], reordered, sig)
    assert not identity.verify_agreement(keys["bob"], agreement, sig)
    assert not identity.verify_agreement(keys["alice"], {**agreement, "n": 1.6}, sig)
    assert not identity.verify_agreement(keys["alice"], agreement, {"value": "AAAA"})
