"""One root error class: every error a citymesh package defines is a CitymeshError and
keeps the standard-library base its callers catch."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from schemas.errors import CitymeshError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "policy_enforcer", "streams", "topology", "processors", "deploy", "dashboard", "dataspace")
# defined in files the runner-stages change rewrites (issue 14, item 1); it roots them there


def _error_classes() -> dict[str, type]:
    out = {}
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name):
                    out[f"{info.name}.{name}"] = obj
    return out


ERRORS = _error_classes()


def test_the_packages_define_errors():
    assert {"policy_enforcer.errors.PolicyError", "topology.models.TopologyError", "schemas.loader.SchemaError",
            "streams.keyring.KeyringError", "deploy.broker.BrokerError"} <= set(ERRORS)


@pytest.mark.parametrize("name", sorted(set(ERRORS) - {"schemas.errors.CitymeshError"}))
def test_every_error_is_a_citymesh_error(name):
    assert issubclass(ERRORS[name], CitymeshError), name


@pytest.mark.parametrize("name, base", [
    ("policy_enforcer.errors.PolicyError", ValueError), ("topology.models.TopologyError", ValueError),
    ("topology.loader.TopologyFileError", ValueError), ("schemas.loader.RecordInvalid", ValueError),
    ("streams.keyring.KeyringError", ValueError), ("streams.adapters.csv_import.MappingError", ValueError),
    ("deploy.broker.BrokerError", RuntimeError), ("processors.ledger.store.LedgerNotFound", FileNotFoundError),
])
def test_errors_keep_their_standard_base(name, base):
    assert issubclass(ERRORS[name], base)


def test_documents_are_refused_in_one_path_style():
    """Policies, operator rules and CSV mappings name the path inside the document the same way."""
    from policy_enforcer import PolicyError
    from schemas.errors import PathError
    from streams.adapters.csv_import import MappingError

    policy = PolicyError("unknown duty 'encrypt'", "policy.duties[2].type")
    mapping = MappingError("expected a mapping of file value -> field value", "fields.status.map", "nyc311.yaml")
    assert isinstance(policy, PathError) and isinstance(mapping, PathError)
    assert str(policy) == "policy.duties[2].type: unknown duty 'encrypt'"
    assert str(mapping) == "nyc311.yaml: fields.status.map: expected a mapping of file value -> field value"
    assert (mapping.source, mapping.path, mapping.detail) == ("nyc311.yaml", "fields.status.map",
                                                              "expected a mapping of file value -> field value")
    assert str(PolicyError("master_secret must be at least 16 bytes")) == "master_secret must be at least 16 bytes"
