"""Apache Kafka in KRaft mode on loopback: citymesh's production engine, run here.

The broker's jars come from Maven Central only, through `deploy/kafka/pom.xml` (the pinned
version) and `mvn dependency:copy-dependencies` into a cache (`~/.cache/citymesh/kafka-<version>`,
CITYMESH_KAFKA_CACHE), fetched once. Each node is one JVM running combined broker + controller,
its log directory under the cluster's data directory, so what it stored survives a stop and a
start (`citymesh down` / `citymesh up --engine kafka`). One node serves `citymesh up`; three
nodes (replication 3, min.insync.replicas=2) serve the failover tests.

Security is always on, the way production runs:
- CLIENT listener, SASL_SSL with SCRAM-SHA-512: every participant and mesh service logs in
  with its own credentials (`topology.access` creates them through the admin API);
- INTERNAL (replication) and CONTROLLER (the KRaft quorum) listeners, SSL with client
  certificates required: only the broker's own certificate (streams/tls.py) gets in;
- StandardAuthorizer, no ACL means no access; super users: the broker's certificate and the
  operator's bootstrap account, whose SCRAM credential is written when the storage is formatted.

A node started without `detach` is tied to its parent with PR_SET_PDEATHSIG (as the embedded
broker is), so a crashed test session never leaves a JVM behind.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streams.tls import BROKER_PRINCIPAL, TlsFiles

from .broker import BrokerError, _die_with_parent, free_port, stop_pid

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
ADMIN_USER = "mesh.admin"  # the operator's bootstrap account, the one super user of the mesh
SCRAM = "SCRAM-SHA-512"


class KafkaEngineError(BrokerError):
    """Apache Kafka could not be fetched, formatted, started or reached."""


def kafka_version(pom: Path = POM) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns).text.strip()


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "citymesh"


def ensure_kafka(cache: Path | None = None, pom: Path = POM) -> Path:
    """The directory of the pinned Apache Kafka's jars, fetched through Maven on first use.

    Concurrent callers (test workers, a CLI and a test) wait on a lock; a half-copied fetch is
    never used (the jars land in a temporary directory, renamed when complete)."""
    root = Path(cache or default_cache()) / f"kafka-{kafka_version(pom)}"
    libs = root / "libs"
    if (root / ".complete").exists():
        return libs
    for tool, package in (("java", "default-jre-headless"), ("mvn", "maven")):
        if shutil.which(tool) is None:
            raise KafkaEngineError(f"`{tool}` is not installed; Apache Kafka needs it "
                                   f"(Debian: apt-get install {package}; `make test` installs it)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            return libs
        tmp = root / f"libs.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        run = subprocess.run(["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                              f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
                             capture_output=True, text=True)
        if run.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            raise KafkaEngineError(f"mvn could not fetch Apache Kafka {kafka_version(pom)} "
                                   f"(exit {run.returncode}): {(run.stdout + run.stderr)[-2000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        (root / ".complete").write_text(kafka_version(pom))
    return libs


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.lifecycle.name = kafka.server.KafkaRaftServer
logger.lifecycle.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


@dataclass
class NodePorts:
    node_id: int
    client: int
    internal: int
    controller: int


@dataclass
class KafkaCluster:
    """N combined broker+controller nodes on 127.0.0.1 whose data lives in `data_dir`.

    The first start formats the storage (a new cluster id, the bootstrap account's SCRAM
    credential); later starts reuse it and, where still free, the same ports."""

    data_dir: Path
    tls: TlsFiles
    admin_password: str
    nodes: int = 1
    detach: bool = False
    heap_mb: int = 384
    cache: Path | None = None
    procs: dict[int, subprocess.Popen | int] = field(default_factory=dict, init=False)
    ports: list[NodePorts] = field(default_factory=list, init=False)

    # ---- layout ---------------------------------------------------------------------------------

    @property
    def _meta(self) -> Path:
        return Path(self.data_dir) / "cluster.json"

    def node_dir(self, node_id: int) -> Path:
        return Path(self.data_dir) / f"node-{node_id}"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p.client}" for p in self.ports)

    def admin_config(self) -> dict:
        """librdkafka settings of the operator's bootstrap account."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM,
                "sasl.username": ADMIN_USER, "sasl.password": self.admin_password,
                "ssl.ca.location": str(self.tls.ca_cert)}

    def client_config(self, user: str, password: str) -> dict:
        """librdkafka settings of any SCRAM user (a participant, a service)."""
        return {**self.admin_config(), "sasl.username": user, "sasl.password": password}

    def env(self, user: str, password: str) -> dict[str, str]:
        """CITYMESH_* settings (streams/settings.py) that make a process log in as `user`."""
        return sasl_env(self.bootstrap, self.tls.ca_cert, user, password)

    def _load_or_plan(self) -> tuple[str, bool]:
        """(cluster id, whether the storage still has to be formatted)."""
        if self._meta.exists():
            meta = json.loads(self._meta.read_text())
            if meta["nodes"] != self.nodes:
                raise KafkaEngineError(f"{self.data_dir} holds a {meta['nodes']}-node cluster, not {self.nodes}")
            self.ports = [NodePorts(**p) for p in meta["ports"]]
            taken = [p for p in self.ports for port in (p.client, p.internal, p.controller) if not _free(port)]
            if taken:  # another process took a port meanwhile: move the node (its data stays)
                self.ports = [NodePorts(p.node_id, free_port(), free_port(), free_port()) for p in self.ports]
            return meta["cluster_id"], not meta.get("formatted", False)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.ports = [NodePorts(i, free_port(), free_port(), free_port()) for i in range(1, self.nodes + 1)]
        return cluster_id, True

    def _save(self, cluster_id: str, formatted: bool) -> None:
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        self._meta.write_text(json.dumps({"cluster_id": cluster_id, "nodes": self.nodes, "formatted": formatted,
                                          "version": kafka_version(),
                                          "ports": [p.__dict__ for p in self.ports]}, indent=2))

    def server_properties(self, node: NodePorts) -> str:
        n = self.nodes
        voters = ",".join(f"{p.node_id}@127.0.0.1:{p.controller}" for p in self.ports)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"CLIENT://127.0.0.1:{node.client},INTERNAL://127.0.0.1:{node.internal},"
                         f"CONTROLLER://127.0.0.1:{node.controller}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{node.client},INTERNAL://127.0.0.1:{node.internal}",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "CONTROLLER",
            "sasl.enabled.mechanisms": SCRAM,
            "listener.name.client.sasl.enabled.mechanisms": SCRAM,
            "listener.name.client.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.tls.broker_keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.tls.ca_cert,
            "listener.name.internal.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"{BROKER_PRINCIPAL};User:{ADMIN_USER}",
            "log.dirs": self.node_dir(node.node_id) / "data",
            "num.partitions": 1,
            "default.replication.factor": n,
            "min.insync.replicas": min(2, n),
            "offsets.topic.replication.factor": n,
            "offsets.topic.num.partitions": 6,
            "transaction.state.log.replication.factor": n,
            "transaction.state.log.min.isr": min(2, n),
            "transaction.state.log.num.partitions": 6,
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            # with peers, a dead node is fenced (its partitions get new leaders) after 3 s without a
            # heartbeat; alone, the default 9 s, so a starved machine does not fence its only broker
            "broker.session.timeout.ms": 3000 if n > 1 else 9000,
            "broker.heartbeat.interval.ms": 500 if n > 1 else 2000,
            # small machine: few threads per node
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.replica.fetchers": 1,
            "log.cleaner.threads": 1,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    # ---- lifecycle --------------------------------------------------------------------------------

    def _java(self, libs: Path, node_id: int, main: str, *args: str) -> list[str]:
        nd = self.node_dir(node_id)
        return ["java", f"-Xms{min(self.heap_mb, 256)}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={nd / 'log4j2.properties'}", "-cp", f"{libs}/*", main, *args]

    def start(self, timeout_s: float = 120.0) -> "KafkaCluster":
        libs = ensure_kafka(self.cache)
        cluster_id, unformatted = self._load_or_plan()
        for p in self.ports:
            nd = self.node_dir(p.node_id)
            nd.mkdir(parents=True, exist_ok=True)
            (nd / "server.properties").write_text(self.server_properties(p))
            (nd / "log4j2.properties").write_text(LOG4J2)
        if unformatted:
            self._format(libs, cluster_id)
        self._save(cluster_id, formatted=True)
        for p in self.ports:
            self.start_node(p.node_id, libs)
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _format(self, libs: Path, cluster_id: str) -> None:
        """Format every node's storage (in parallel: each is a JVM start) with the cluster id and
        the bootstrap account's SCRAM credential."""
        runs = {p.node_id: subprocess.Popen(
            self._java(libs, p.node_id, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       f"--cluster-id={cluster_id}",  # one word: an id may start with "-"
                       "--config", str(self.node_dir(p.node_id) / "server.properties"),
                       "--add-scram", f"{SCRAM}=[name={ADMIN_USER},password={self.admin_password}]"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in self.ports}
        for node_id, run in runs.items():
            out = run.communicate()[0]
            if run.returncode != 0:
                raise KafkaEngineError(f"formatting node {node_id} failed: {out[-2000:]}")

    def start_node(self, node_id: int, libs: Path | None = None) -> None:
        """(Re)start one node from its stored data."""
        libs = libs or ensure_kafka(self.cache)
        nd = self.node_dir(node_id)
        with open(nd / "kafka.log", "ab") as log:
            self.procs[node_id] = subprocess.Popen(
                self._java(libs, node_id, "kafka.Kafka", str(nd / "server.properties")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=None if self.detach else _die_with_parent, start_new_session=self.detach)

    def pid(self, node_id: int) -> int | None:
        proc = self.procs.get(node_id)
        return proc.pid if isinstance(proc, subprocess.Popen) else proc

    def wait_ready(self, timeout_s: float = 120.0, nodes: int | None = None) -> None:
        """Until the bootstrap account sees `nodes` (default: all) unfenced brokers."""
        want = nodes or self.nodes
        deadline = time.monotonic() + timeout_s
        self._wait_listening(deadline)  # TCP first, so librdkafka does not log refused connects
        admin = AdminClient({**self.admin_config(), "socket.connection.setup.timeout.ms": 2000})
        last: Exception | str | None = None
        while time.monotonic() < deadline:
            for node_id, proc in self.procs.items():
                if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
                    tail = (self.node_dir(node_id) / "kafka.log").read_text(errors="replace")[-1500:]
                    raise KafkaEngineError(f"Kafka node {node_id} exited with code {proc.returncode}:\n{tail}")
            try:
                md = admin.list_topics(timeout=2.0)
                if len(md.brokers) >= want:
                    return
                last = f"{len(md.brokers)} of {want} brokers up"
            except Exception as exc:  # noqa: BLE001 - KafkaException while the listeners come up
                last = exc
            time.sleep(0.2)
        raise KafkaEngineError(f"Kafka at {self.bootstrap} not ready within {timeout_s:.0f}s: {last}")

    def _wait_listening(self, deadline: float) -> None:
        import socket
        port = self.ports[0].client if not self.procs else \
            next(p.client for p in self.ports if p.node_id in self.procs)
        while time.monotonic() < deadline:
            for node_id, proc in self.procs.items():
                if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
                    return  # wait_ready reports it, with the node's log
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.1)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (failover tests): no controlled shutdown, no flush."""
        pid = self.pid(node_id)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            proc = self.procs.pop(node_id)
            if isinstance(proc, subprocess.Popen):
                proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node at once (a controlled shutdown that flushes the logs), SIGKILL after
        the timeout, so no JVM outlives this call."""
        for node_id in list(self.procs):
            pid = self.pid(node_id)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for node_id in list(self.procs):
            proc = self.procs.pop(node_id)
            stop_pid(self.pid_of(proc), timeout_s, proc if isinstance(proc, subprocess.Popen) else None)

    @staticmethod
    def pid_of(proc: subprocess.Popen | int) -> int:
        return proc.pid if isinstance(proc, subprocess.Popen) else proc

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def sasl_env(bootstrap: str, ca_cert: Path, user: str, password: str) -> dict[str, str]:
    """The environment of a mesh process that logs in to Apache Kafka as `user` (SCRAM over TLS)."""
    return {"CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_SECURITY_PROTOCOL": "SASL_SSL",
            "CITYMESH_SASL_MECHANISM": SCRAM, "CITYMESH_SASL_USERNAME": user, "CITYMESH_SASL_PASSWORD": password,
            "CITYMESH_SSL_CA_LOCATION": str(ca_cert)}


def kcat_env(cache: Path | None = None) -> dict[str, str]:
    """Environment for Debian's kcat against this engine. Debian 12's librdkafka (2.0.2) cannot log
    in with SCRAM to Apache Kafka 4.x: it repeats the client nonce in its final SCRAM message and
    Kafka 4 checks it strictly (fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895). The
    confluent-kafka wheel already installed ships a current librdkafka with the same C ABI: kcat
    runs unchanged, loading that one (LD_LIBRARY_PATH to a directory that names it librdkafka.so.1)."""
    import confluent_kafka
    libs = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if not libs:
        raise KafkaEngineError("the confluent-kafka wheel ships no librdkafka here; kcat needs librdkafka >= 2.6.1")
    d = Path(cache or default_cache()) / "librdkafka"
    d.mkdir(parents=True, exist_ok=True)
    link = d / "librdkafka.so.1"
    if not link.exists() or link.resolve() != libs[0].resolve():
        tmp = d / f"librdkafka.so.1.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(libs[0])
        tmp.replace(link)
    return {**os.environ, "LD_LIBRARY_PATH": str(d)}


def _free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
