import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from deploy.broker import BrokerError, EmbeddedBroker, pid_alive, wait_for_metadata
from deploy.state import resolve_bootstrap
from streams.settings import Settings


def test_embedded_broker_starts_answers_and_stops():
    with EmbeddedBroker() as b:
        pid = b.pid
        assert pid_alive(pid)
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
        assert md.brokers
    assert not pid_alive(pid)


def test_broker_dies_with_its_parent(tmp_path):
    """A crashed owner (SIGKILL, no cleanup) must not leave the broker running."""
    script = ("import sys,time; from deploy.broker import EmbeddedBroker; b=EmbeddedBroker().start(); "
              "print(b.pid, flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    broker_pid = int(owner.stdout.readline())
    assert pid_alive(broker_pid)
    owner.kill()
    owner.wait()
    import time
    deadline = time.monotonic() + 5
    while pid_alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(broker_pid)


def test_wait_for_metadata_fails_clearly_when_nothing_listens():
    from deploy.broker import free_port
    with pytest.raises(BrokerError, match="no metadata"):
        wait_for_metadata(f"127.0.0.1:{free_port()}", timeout_s=1.0)


def test_settings_read_the_citymesh_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("CITYMESH_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CITYMESH_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CITYMESH_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CITYMESH_REPLICATION_FACTOR", "3")
    s = Settings()
    conf = s.client_config()
    assert conf["bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert s.replication_factor == 3
    assert resolve_bootstrap(s) == "kafka-1:9092,kafka-2:9092"  # no embedded broker consulted


def test_no_bootstrap_and_no_mesh_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="citymesh up"):
        resolve_bootstrap(Settings(state_dir=tmp_path))
