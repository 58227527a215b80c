"""A schema-driven fuzz run of the control plane's API: schemathesis generates requests for
every operation of its OpenAPI description (random bodies, parameters and paths), sent with
valid tokens of real participants, tokens for the wrong audience, or none; no request gets
a 5xx. (Driven through hypothesis directly: schemathesis' pytest plugin does not load on
pytest 9.)"""

from __future__ import annotations

import random

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dataspace.identity import API_AUDIENCE, connector_audience, issue_token

NAMES = ["skyway", "logistics", "outsider", "bureau", "regulator"]


@pytest.fixture(scope="module")
def operations(module_mesh):
    schema = schemathesis.openapi.from_asgi("/openapi.json", module_mesh.server.server.config.app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 30, [op.label for op in ops]
    return ops


def test_no_request_gets_a_5xx(module_mesh, operations):
    failures: list[str] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.explicit, Phase.generate])  # a shrink of HTTP calls takes minutes
    @given(st.data())
    def run(data):
        op = data.draw(st.sampled_from(operations))
        case = data.draw(op.as_strategy())
        rnd = random.Random(data.draw(st.integers(0, 2**32)))
        if case.path_parameters and "participant" in case.path_parameters and rnd.random() < 0.7:
            case.path_parameters["participant"] = module_mesh.id(rnd.choice(NAMES))
        if case.query and "wait_s" in case.query:  # a long poll would only make the run long
            case.query["wait_s"] = 0.2
        caller = module_mesh.ring(rnd.choice(NAMES))
        if case.path.startswith("/dsp/"):
            target = (case.path_parameters or {}).get("participant", "nobody")
            audience = connector_audience(target) if rnd.random() < 0.9 else API_AUDIENCE
        else:
            audience = API_AUDIENCE if rnd.random() < 0.9 else connector_audience("x")
        headers = {"Authorization": f"Bearer {issue_token(caller, audience)}"} if rnd.random() < 0.9 else {}
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> {response.status_code}: "
                            f"{response.text[:300]}")
        assert response.status_code < 500, failures[-1]

    run()
    assert not failures
