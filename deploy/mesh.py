"""`citymesh up`, `down` and `status`: the mesh as a set of supervised processes."""

from __future__ import annotations

import json
import time

from confluent_kafka import KafkaException

from streams import keyring
from streams.admin import TopicCounter
from streams.settings import Settings
from topology.apply import apply
from topology.loader import TopologyFileError, load_topology

from . import supervisor
from .broker import GROUP_SESSION_MS, EmbeddedBroker, wait_for_metadata
from .processes import mesh_processes, service_of
from .state import MeshState, client_config


NO_ACCESS_CONTROL = ("NO access control: any client on this machine can read and write every topic "
                     "(`citymesh up --engine kafka` runs Apache Kafka with SCRAM over TLS and ACLs from the topology)")


def up(settings: Settings, topology_path: str, engine: str = "tansu", runner_groups: int = 1,
       runner_processes: int = 1) -> int:
    state = MeshState.load(settings)
    if state is not None and all(state.alive().values()):
        print(f"the mesh is already up ({state.bootstrap}); `citymesh down` first to restart it")
        return 0
    if state is not None:
        down(settings, quiet=True)
    try:
        topo = load_topology(topology_path)
    except TopologyFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    for p in topo.participants:
        keyring.create(settings.keyring_dir, p.id)
    process_env: dict[str, dict] = {}
    engine_env: dict[str, str] = {}  # what every process gets for the broker it runs on
    if settings.bootstrap:
        wait_for_metadata(settings.bootstrap, 30, config=settings.client_config())
        state = MeshState(settings.bootstrap, embedded=False, started_ms=int(time.time() * 1000))
        client, with_acls = settings.client_config(), settings.apply_acls
    elif engine == "kafka":
        state, client, process_env = _start_kafka(settings, topo)
        with_acls = True
    else:
        broker = EmbeddedBroker(settings.broker_host, settings.broker_port,
                                log_path=settings.state_dir / "broker.log", detach=True).start()
        state = MeshState(broker.bootstrap, embedded=True, processes={"broker": broker.pid},
                          started_ms=int(time.time() * 1000))
        print(f"embedded broker (Tansu) pid {broker.pid} on {broker.bootstrap}")
        print(NO_ACCESS_CONTROL)
        client, with_acls = settings.client_config(state.bootstrap), False
        if "session_timeout_ms" not in settings.model_fields_set:  # (an operator's own setting stands)
            engine_env["CITYMESH_SESSION_TIMEOUT_MS"] = str(GROUP_SESSION_MS)
    state.save(settings)
    report = apply(topo, client, settings.replication_factor, settings.keyring_dir, with_acls)
    print(f"applied {topology_path}: {len(report.topics)} topics, {report.changes} change(s)"
          + (f", {report.acls} ACLs, {len(report.credentials)} credential(s) set" if with_acls else ""))
    for line in report.retired_lines():
        print(line)
    env = {"CITYMESH_BOOTSTRAP": state.bootstrap, "CITYMESH_STATE_DIR": str(settings.state_dir.resolve()),
           **engine_env}
    wanted = mesh_processes(topo, topology_path, runner_groups, runner_processes)
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / supervisor.TABLE_FILE).write_text(json.dumps(
        {name: {"argv": argv, "env": {**env, **process_env.get(service_of(name, argv), {})},
                "log": str((logs / f"{name}.log").resolve())}
         for name, argv in wanted.items()}, indent=2))
    argv = supervisor.python_module("deploy.supervisor", "--state-dir", str(settings.state_dir.resolve()))
    sup = supervisor.spawn(argv, logs / "supervisor.log", detach=True)
    state.processes["supervisor"] = sup.pid
    state.identities = {name: supervisor.identity(pid) for name, pid in state.processes.items()}
    state.identities["supervisor"] = supervisor.identity_of_started(sup.pid, argv)
    state.save(settings)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not set(wanted) <= set((MeshState.load(settings) or state).processes):
        time.sleep(0.05)
    state = MeshState.load(settings) or state
    print(f"supervisor pid {sup.pid}: restarts any process below that dies (`citymesh status` shows restarts)")
    for name in wanted:
        print(f"started {name} pid {state.processes.get(name, '?')}"
              + (f" as {process_env[service]['CITYMESH_SASL_USERNAME']}"
                 if (service := service_of(name, wanted[name])) in process_env else ""))
    if "dashboard" in state.processes:  # the address it really bound (another may hold the default port)
        from dashboard.server import wait_for_url
        print(f"dashboard: {wait_for_url(settings.state_dir, 15, state.started_ms / 1000) or 'http://' + settings.dashboard_listen + '/'}")
    if "dataspace" in state.processes:
        from dashboard.server import wait_for_url
        from dataspace.client import URL_FILE
        url = wait_for_url(settings.state_dir, 30, state.started_ms / 1000, URL_FILE)
        print(f"dataspace (DSP): {url}/dsp/<participant>   management API: {url}/api" if url else
              f"dataspace: not answering yet; see {settings.state_dir / 'logs' / 'dataspace.log'}")
    print(f"the mesh is up: export CITYMESH_BOOTSTRAP={state.bootstrap}  (state in {MeshState.path(settings)})")
    return 0


def _start_kafka(settings: Settings, topo) -> tuple[MeshState, dict, dict[str, dict]]:
    """One Apache Kafka node whose data lives in <state>/kafka (so a later `up` finds it all again),
    the TLS material and the operator's bootstrap account; each mesh process gets the settings of
    its own service principal (topology/access.py), none runs as a super user."""
    from streams import tls
    from topology.access import password_of, services

    from .kafka import ADMIN_USER, KafkaCluster
    files, _ = tls.ensure(settings.keyring_dir)
    cluster = KafkaCluster(settings.state_dir / "kafka", files,
                           keyring.service_password(settings.keyring_dir, ADMIN_USER), detach=True).start()
    print(f"Apache Kafka node pid {cluster.pid(1)} on {cluster.bootstrap} (KRaft; data in {cluster.data_dir}); "
          f"access control on: SCRAM-SHA-512 over TLS, ACLs from the topology")
    state = MeshState(cluster.bootstrap, embedded=True, processes={"broker": cluster.pid(1)},
                      started_ms=int(time.time() * 1000), engine="kafka")
    env = {name: cluster.env(user, password_of(settings.keyring_dir, topo, user))
           for name, user in services(topo).items()}
    env["dataspace"]["CITYMESH_APPLY_ACLS"] = "true"  # consumers' grants follow their negotiated contracts
    return state, cluster.admin_config(), env


def down(settings: Settings, quiet: bool = False) -> int:
    state = MeshState.load(settings)
    if state is None:
        if not quiet:
            print("nothing to stop")
        return 0
    # the supervisor first (it stops its processes, which commit their offsets), then whatever
    # of them is left (a supervisor killed before), the broker last; each only while its pid is
    # still the process that was started (deploy/supervisor.py)
    order = {"supervisor": state.processes["supervisor"]} if "supervisor" in state.processes else {}
    order.update({k: v for k, v in state.processes.items() if k not in ("supervisor", "broker")})
    if "broker" in state.processes:
        order["broker"] = state.processes["broker"]
    identities = dict(state.identities)
    if "supervisor" in order:  # its children's identities as it last wrote them, before it stops
        identities.update((MeshState.load(settings) or state).identities)
    # a Kafka node flushes its logs in a controlled shutdown: give it time before any SIGKILL
    for name in supervisor.stop_verified(order, identities, timeout_s=30.0 if state.engine == "kafka" else 15.0):
        if not quiet:
            print(f"stopped {name}")
    MeshState.path(settings).unlink(missing_ok=True)
    return 0


def status(settings: Settings, as_json: bool = False) -> int:
    state = MeshState.load(settings)
    bootstrap = settings.bootstrap or (state.bootstrap if state else None)
    if state is None and not settings.bootstrap:
        if as_json:
            print(json.dumps({"up": False}))
        else:
            print("the mesh is down (no state in %s)" % MeshState.path(settings))
        return 1
    if as_json:
        return _status_json(settings, state, bootstrap)
    engine = {"kafka": " (Apache Kafka, started by up)", "tansu": " (embedded Tansu, no access control)"}
    print(f"cluster: {bootstrap}{engine[state.engine] if state and state.embedded else ''}")
    alive = state.alive() if state else {}
    for name, pid in (state.processes.items() if state else []):
        c = state.children.get(name, {})
        extra = f"  restarts {c['restarts']}, last {c['last_exit']}" if c.get("restarts") else ""
        print(f"  {name:<28} pid {pid:<8} {'running' if alive.get(name) else 'DEAD'}{extra}")
    for name, c in (state.children.items() if state else []):
        if name not in state.processes:
            print(f"  {name:<28} {'restarting':<12} restarts {c['restarts']}, last {c['last_exit']}")
    for name, url in _addresses(settings).items():
        print(f"  {name:<28} {url}")
    client = client_config(settings)
    try:
        wait_for_metadata(bootstrap, 3, config=client)
    except Exception as exc:
        print(f"broker unreachable: {exc}")
        return 1
    counter = TopicCounter(client)
    try:
        for topic, n in counter.counts().items():
            print(f"  {topic:<44} {n:>10} records")
    except (KafkaException, TimeoutError) as exc:  # status answers with what it knows
        print(f"  topic counts not available: {exc}")
    finally:
        counter.close()
    _limits_status(client)
    _runner_status(settings)
    return 0


def _runner_status(settings: Settings) -> None:
    """What each runner last said about itself (processors/status.py): progress, start-overs
    after broker trouble, records it set aside as poison or as too large to write, partitions
    it holds because the broker kept refusing their outputs (processors/quarantine.py)."""
    from processors import status as process_status
    rows = []
    for name, st in process_status.read_all(settings.state_dir).items():
        if not name.startswith("runner-"):
            continue
        line = f"  {name:<28} {st.get('consumed', 0):>10} consumed"
        if st.get("start_overs"):
            line += f", {st['start_overs']} start-over(s), last: {st.get('last_error')}"
        quarantined = st.get("quarantined") or []
        if quarantined:
            line += f", {len(quarantined)} record(s) quarantined: " + "; ".join(
                f"p{q['partition']}@{q['offset']} {q['rule']}" for q in quarantined[-3:])
        for h in st.get("held") or []:
            attempt = "being tried again" if h.get("trying") else f"next try in {h['retry_in_s']} s"
            line += f", partition {h['partition']} HELD at offset {h['offset']} ({attempt}): {h['reason']}"
        rows.append(line)
    if rows:
        print("runners:")
        print("\n".join(rows))


def _addresses(settings: Settings) -> dict[str, str]:
    """The HTTP addresses the running processes wrote: dashboard, DSP base URL, management API."""
    from dashboard.server import URL_FILE as DASHBOARD_URL
    from dataspace.client import URL_FILE as DSP_URL
    out = {}
    dashboard = settings.state_dir / DASHBOARD_URL
    if dashboard.exists():
        out["dashboard"] = dashboard.read_text().strip()
    dsp = settings.state_dir / DSP_URL
    if dsp.exists():
        base = dsp.read_text().strip()
        out["dsp"] = f"{base}/dsp"
        out["api"] = f"{base}/api"
    return out


def _processes_view(state: MeshState | None) -> dict:
    """name -> pid, running (still the process started), restarts and last exit."""
    if state is None:
        return {}
    alive = state.alive()
    return {name: {"pid": pid, "running": alive[name],
                   **{k: state.children.get(name, {}).get(k) for k in ("restarts", "last_exit", "last_exit_ms")}}
            for name, pid in state.processes.items()}


def _status_json(settings: Settings, state: MeshState | None, bootstrap: str) -> int:
    out = {"up": True, "cluster": bootstrap, "embedded": bool(state and state.embedded),
           "processes": _processes_view(state),
           **_addresses(settings)}
    try:
        wait_for_metadata(bootstrap, 3)
        counter = TopicCounter(settings.client_config(bootstrap))
        try:
            out["topics"] = counter.counts()
        finally:
            counter.close()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: status must always answer
        out["broker_error"] = str(exc)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0 if "broker_error" not in out else 1


def _limits_status(client: dict) -> None:
    """Limiter and breaker states per product partition, as the runners last persisted them.
    One reader for all products, not a consumer and an admin client each: with a test session's
    catalog (hundreds of products) this made and dropped hundreds of librdkafka clients, and in
    one CI run the process died there, inside confluent-kafka's AdminClient.list_offsets (SIGSEGV)."""
    from processors.fencing import FenceReader
    from processors.limiting import Limiting, describe
    from processors.partition_state import read_states
    from streams import topics
    from streams.control import read_table
    rows = []
    reader = FenceReader(client)
    try:
        for pid, entry in sorted(read_table(client, topics.CONTROL_CATALOG).items()):
            for p, state in sorted(read_states(client, entry["provider_id"], pid, reader).items()):
                if Limiting.name in state:
                    rows.append(f"  {pid + ':' + str(p):<28} {describe(state[Limiting.name])}  "
                                f"(offset {state['offset']})")
    finally:
        reader.close()
    if rows:
        print("limits and breakers:")
        print("\n".join(rows))
