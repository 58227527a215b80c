"""Production manifests for Kubernetes with Strimzi: `citymesh apply --emit strimzi DIR`.

On paper, but the same derivation `apply` uses on a live cluster, so they cannot drift:
- topics.yaml: one KafkaTopic per topic of the data flow (topology.apply.topic_specs);
- users.yaml: one KafkaUser per principal (participants and mesh services), SCRAM-SHA-512,
  with exactly the ACLs of topology.access.grants (a test compares them with what `apply` creates
  on Apache Kafka, read back with describe_acls);
- runners.yaml: one Deployment per product running its enforcement runner as its own service
  principal, with transactions on (the pod's name in its transactional id); Strimzi's User
  Operator puts each user's password in a Secret named after the user, and the cluster CA in
  `<cluster>-cluster-ca-cert`.
Nothing here talks to a cluster. Strimzi names a KafkaUser's principal after the resource, so
every principal must be a valid Kubernetes name (participant ids with '_' are refused, named).

Not covered: Strimzi's User Operator makes a KafkaUser's ACLs exactly its resource's, so the read
grants the dataspace control plane gives consumers of negotiated contracts through the admin API
(dataspace/contracts.py) would be taken away at its next reconciliation; on Strimzi the plane would
have to write them into the consumer's KafkaUser instead. Only `topology.access.grants(topo)` (the
topology file's contracts) is emitted here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from schemas.errors import CitymeshError
from topology.access import CLUSTER, Grant, grants, principals, services
from topology.apply import topic_specs
from topology.models import Topology

API = "kafka.strimzi.io/v1beta2"
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class EmitError(ValueError, CitymeshError):
    """The topology cannot be written as Strimzi resources (e.g. a name Kubernetes refuses)."""


def _k8s_name(name: str) -> str:
    """A KafkaTopic's resource name (the topic name itself goes in spec.topicName)."""
    return re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")[:253]


def topic_resources(topo: Topology, cluster: str, replicas: int) -> list[dict]:
    return [{"apiVersion": API, "kind": "KafkaTopic",
             "metadata": {"name": _k8s_name(s.name), "labels": {"strimzi.io/cluster": cluster}},
             "spec": {"topicName": s.name, "partitions": s.partitions, "replicas": replicas,
                      "config": {k: str(v) for k, v in s.config.items()}}} for s in topic_specs(topo)]


def _acl(ops: list[str], resource: str, name: str, pattern: str) -> dict:
    if resource == "cluster":  # Strimzi's cluster resource has neither a name nor a pattern
        return {"resource": {"type": "cluster"}, "operations": sorted(ops), "host": "*"}
    return {"resource": {"type": resource, "name": name, "patternType": "prefix" if pattern == "prefixed" else "literal"},
            "operations": sorted(ops), "host": "*"}


def user_resources(topo: Topology, cluster: str) -> list[dict]:
    by_user: dict[str, dict[tuple[str, str, str], list[str]]] = {u: {} for u in principals(topo)}
    for g in grants(topo):
        by_user[g.user].setdefault((g.resource, g.name, g.pattern), []).append(g.operation)
    out = []
    for user, acls in by_user.items():
        if not _K8S_NAME.match(user):
            raise EmitError(f"principal {user!r} is not a valid Kubernetes resource name, which Strimzi "
                            "requires of a KafkaUser (use a-z, 0-9, '-' in participant ids)")
        out.append({"apiVersion": API, "kind": "KafkaUser",
                    "metadata": {"name": user, "labels": {"strimzi.io/cluster": cluster}},
                    "spec": {"authentication": {"type": "scram-sha-512"},
                             "authorization": {"type": "simple", "acls": [
                                 _acl(ops, *key) for key, ops in sorted(acls.items())]}}})
    return out


def runner_deployments(topo: Topology, cluster: str, image: str, runner_groups: int = 1) -> list[dict]:
    """One Deployment per product and runner group (processors/sharding.py); scale a group's
    processes with its replicas, which share the product's partitions."""
    out = []
    for p, group in ((p, g) for p in topo.products for g in range(runner_groups)):
        user = services(topo)[f"runner-{p.id}"]
        env = [{"name": "CITYMESH_BOOTSTRAP", "value": f"{cluster}-kafka-bootstrap:9093"},
               {"name": "CITYMESH_SECURITY_PROTOCOL", "value": "SASL_SSL"},
               {"name": "CITYMESH_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
               {"name": "CITYMESH_SASL_USERNAME", "value": user},
               {"name": "CITYMESH_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": user, "key": "password"}}},
               {"name": "CITYMESH_SSL_CA_LOCATION", "value": "/etc/citymesh/ca/ca.crt"},
               {"name": "CITYMESH_KEYS_DIR", "value": "/etc/citymesh/keys"},
               # outputs and offsets in one transaction per batch (processors/transactions.py), under
               # a transactional id the pod keeps across container restarts
               {"name": "CITYMESH_TRANSACTIONS", "value": "on"},
               {"name": "CITYMESH_RUNNER_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        name = _k8s_name(f"citymesh-runner-{p.id}" + (f"-g{group}" if runner_groups > 1 else ""))
        command = ["python", "-m", "processors.runner", "--product", p.id]
        if runner_groups > 1:
            command += ["--group", str(group), "--groups", str(runner_groups)]
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "labels": {"app": "citymesh-runner", "citymesh/product": p.id,
                                                          "citymesh/runner-group": str(group)}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}}, "spec": {
                                 "containers": [{"name": "runner", "image": image,
                                                 "command": command,
                                                 "env": env, "ports": [{"name": "metrics", "containerPort": 9400}],
                                                 "volumeMounts": [{"name": "ca", "mountPath": "/etc/citymesh/ca"},
                                                                  {"name": "keys", "mountPath": "/etc/citymesh/keys"}]}],
                                 "volumes": [{"name": "ca", "secret": {"secretName": f"{cluster}-cluster-ca-cert"}},
                                             # the provider's HMAC keyring and the mesh secret (citymesh keys)
                                             {"name": "keys", "secret": {"secretName": "citymesh-keys"}}]}}}})
    return out


def emit(topo: Topology, out_dir: Path, cluster: str = "citymesh", replicas: int = 3,
         image: str = "citymesh:0.1.0", runner_groups: int = 1) -> dict[str, int]:
    """Write topics.yaml, users.yaml and runners.yaml; returns resources written per file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"topics.yaml": topic_resources(topo, cluster, replicas), "users.yaml": user_resources(topo, cluster),
             "runners.yaml": runner_deployments(topo, cluster, image, runner_groups)}
    for name, docs in files.items():
        (out_dir / name).write_text(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True))
    return {name: len(docs) for name, docs in files.items()}


def grants_in(users_yaml: Path) -> set[Grant]:
    """The grants a users.yaml expresses (to compare with a live cluster's ACLs)."""
    out = set()
    for doc in yaml.safe_load_all(Path(users_yaml).read_text()):
        for acl in doc["spec"]["authorization"]["acls"]:
            r = acl["resource"]
            name, pattern = ((CLUSTER, "literal") if r["type"] == "cluster" else
                             (r["name"], "prefixed" if r["patternType"] == "prefix" else "literal"))
            out |= {Grant(doc["metadata"]["name"], r["type"], name, pattern, op) for op in acl["operations"]}
    return out
