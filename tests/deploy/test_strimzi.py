"""`citymesh apply --emit strimzi DIR`: the manifests carry exactly the ACLs `apply` creates on
Apache Kafka (read back from the live cluster with describe_acls)."""

from __future__ import annotations

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from deploy.strimzi import grants_in
from tests.deploy.test_cli import _env, citymesh
from tests.topology.test_access import city
from topology.access import cluster_grants, principals
from topology.apply import apply, topic_specs
from topology.loader import load_topology

pytestmark = pytest.mark.kafka


def test_emitted_acls_equal_the_live_clusters(tmp_path, kafka, unique):
    f = tmp_path / "city.yaml"
    f.write_text(city(unique))
    out = citymesh(_env(tmp_path, None), "apply", str(f), "--emit", "strimzi", str(tmp_path / "k8s")).stdout
    assert "users.yaml" in out and "topics.yaml" in out and "runners.yaml" in out
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=tmp_path / "keys", with_acls=True)
    live = cluster_grants(AdminClient(kafka.admin_config()), set(principals(topo)))
    emitted = grants_in(tmp_path / "k8s" / "users.yaml")
    assert emitted == live and len(live) > 50

    topics_doc = list(yaml.safe_load_all((tmp_path / "k8s" / "topics.yaml").read_text()))
    assert {d["spec"]["topicName"] for d in topics_doc} == {s.name for s in topic_specs(topo)}
    assert all(d["spec"]["replicas"] == 3 and d["metadata"]["labels"]["strimzi.io/cluster"] for d in topics_doc)
    users = {d["metadata"]["name"]: d for d in yaml.safe_load_all((tmp_path / "k8s" / "users.yaml").read_text())}
    assert set(users) == set(principals(topo))
    assert all(d["spec"]["authentication"]["type"] == "scram-sha-512" for d in users.values())
    runners = list(yaml.safe_load_all((tmp_path / "k8s" / "runners.yaml").read_text()))
    assert len(runners) == 2
    env = {e["name"]: e for e in runners[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    user = env["CITYMESH_SASL_USERNAME"]["value"]
    assert user in users and env["CITYMESH_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user
