"""Which key signs checkpoints and where the ledger lives, from the environment."""

from __future__ import annotations


import pytest

from processors.ledger.config import ledger_url, operator_keyring
from streams import keyring
from streams.settings import Settings


def test_ledger_url_defaults_to_sqlite_in_state_dir(tmp_path):
    s = Settings(state_dir=tmp_path / "st")
    assert ledger_url(s, {}) == f"sqlite:///{(tmp_path / 'st' / 'ledger.sqlite').resolve()}"
    assert ledger_url(s, {"CITYMESH_LEDGER_URL": "postgresql://x@h/db"}) == "postgresql://x@h/db"


def test_operator_from_env_or_from_the_participants_table(tmp_path):
    keys = tmp_path / "keys"
    op, _ = keyring.create(keys, "city-op")
    other, _ = keyring.create(keys, "someone")
    table = {"city-op": {"roles": ["OPERATOR"], "public_key": op.public_key_hex},
             "someone": {"roles": ["PROVIDER"], "public_key": other.public_key_hex}}
    assert operator_keyring(keys, {}, participants=table).participant_id == "city-op"
    assert operator_keyring(keys, {"CITYMESH_OPERATOR": "someone"}).participant_id == "someone"
    assert operator_keyring(keys, {}, keyring_file=keys / "someone.json").participant_id == "someone"
    with pytest.raises(RuntimeError, match="operators"):
        operator_keyring(keys, {}, participants={**table, "someone": {"roles": ["OPERATOR"]}})
    with pytest.raises(RuntimeError, match="registered"):
        operator_keyring(keys, {}, participants={"city-op": {"roles": ["OPERATOR"], "public_key": "00" * 32}})
