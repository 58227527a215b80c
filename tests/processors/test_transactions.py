"""CITYMESH_TRANSACTIONS=auto decides by what the broker does, not by its name: a record written
in a transaction that is then aborted, read back as read_committed. The embedded Tansu broker
shows it (so the runners go without transactions there, on the offset fencing alone); Apache
Kafka hides it (so they write each batch in a transaction), as the product's runner principal,
under the transactional ids its ACLs grant."""

from __future__ import annotations

import pytest

from processors.transactions import honours_transactions, transactional_id, wanted
from streams import topics
from tests.mesh_fixtures import city_yaml, make_city
from topology.access import password_of, services
from topology.apply import apply
from topology.loader import load_topology


def test_the_embedded_broker_shows_aborted_records(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    state = topics.partition_state(city.provider, city.product)
    tid = transactional_id(f"citymesh-runner.{city.product}")
    assert honours_transactions(client_config, tid, state) is False
    assert wanted("auto", client_config, tid, state) is False
    assert wanted("on", client_config, tid, state) is True  # what the operator says goes
    assert wanted("off", client_config, tid, state) is False
    with pytest.raises(ValueError, match="CITYMESH_TRANSACTIONS"):
        wanted("yes", client_config, tid, state)


@pytest.mark.kafka
def test_apache_kafka_hides_them(tmp_path, kafka, unique):
    f, keys = tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(city_yaml(unique))
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)
    product = f"{unique}-uav"
    runner = services(topo)[f"runner-{product}"]
    as_runner = kafka.client_config(runner, password_of(keys, topo, runner))
    state = topics.partition_state(f"{unique}-skyway", product)
    assert wanted("auto", as_runner, transactional_id(f"citymesh-runner.{product}"), state) is True
