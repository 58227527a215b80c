"""Sources in the topology: checked against their product, started by `up` as adapter processes."""

import pytest

from deploy.processes import mesh_processes
from tests.mesh_fixtures import EXAMPLES
from topology.loader import TopologyFileError, load_topology


def test_example_sources_become_adapter_processes():
    topo = load_topology(EXAMPLES / "city.yaml")
    procs = mesh_processes(topo, "city.yaml")
    mav = procs["source-skyway-ground-station"]
    assert mav[1:4] == ["-m", "streams.adapters.mavlink_udp", "--provider"] and "skyway" in mav
    assert mav[-2:] == ["--listen", "127.0.0.1:14550"]
    assert "streams.adapters.open311_http" in procs["source-hotline-open311"]


def test_every_mesh_process_has_its_own_principal():
    """`up --engine kafka` logs each process in as its own service principal (topology/access.py)."""
    from topology.access import services
    topo = load_topology(EXAMPLES / "city.yaml")
    principals = services(topo)
    assert set(principals) == set(mesh_processes(topo, "city.yaml"))
    assert len(set(principals.values())) == len(principals)
    assert principals["runner-uav-telemetry"] == "sz-data-bureau.runner.uav-telemetry"


def test_runner_groups_and_processes_become_runner_processes():
    """`up --runner-groups 2 --runner-processes 3`: six runners per product, each told its group
    and its stable instance name, all under the product's one runner principal."""
    from deploy.processes import service_of
    from topology.access import services
    topo = load_topology(EXAMPLES / "city.yaml")
    procs = mesh_processes(topo, "city.yaml", runner_groups=2, runner_processes=3)
    uav = {name: argv for name, argv in procs.items() if name.startswith("runner-uav-telemetry")}
    assert sorted(uav) == [f"runner-uav-telemetry.g{g}.{i}" for g in (0, 1) for i in range(3)]
    argv = uav["runner-uav-telemetry.g1.2"]
    assert argv[argv.index("--group") + 1] == "1" and argv[argv.index("--groups") + 1] == "2"
    assert argv[argv.index("--instance") + 1] == "2" and argv[argv.index("--name") + 1] == "runner-uav-telemetry.g1.2"
    principals = services(topo)
    assert {principals[service_of(name, argv)] for name, argv in uav.items()} == {"sz-data-bureau.runner.uav-telemetry"}
    assert set(mesh_processes(topo, "city.yaml")) - set(procs) == {"runner-uav-telemetry", "runner-hotline-tickets"}


@pytest.mark.parametrize("change,message", [
    (("type: open311-http", "type: fax"), "unknown source type 'fax'"),
    (("    type: open311-http           # Open311 GeoReport v2: POST /open311/v2/requests.json\n    product: hotline-tickets",
      "    type: open311-http\n    product: uav-telemetry"), "produces HotlineTicket"),
])
def test_bad_sources_name_the_entry(tmp_path, change, message):
    text = (EXAMPLES / "city.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "city.yaml"
    bad.write_text(text.replace(change[0], change[1]).replace("file: geo/", f"file: {EXAMPLES}/geo/"))
    with pytest.raises(TopologyFileError) as err:
        load_topology(bad)
    assert "sources[1] (hotline-open311)" in str(err.value) and message in str(err.value)


def test_strimzi_runner_deployments_per_group():
    """`citymesh apply --emit strimzi DIR --runner-groups 2`: a Deployment per product and group."""
    from deploy.strimzi import runner_deployments
    topo = load_topology(EXAMPLES / "city.yaml")
    one = runner_deployments(topo, "citymesh", "img")
    two = runner_deployments(topo, "citymesh", "img", runner_groups=2)
    assert [d["metadata"]["name"] for d in one] == ["citymesh-runner-uav-telemetry", "citymesh-runner-hotline-tickets"]
    assert len(two) == 4 and two[1]["metadata"]["name"] == "citymesh-runner-uav-telemetry-g1"
    command = two[1]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-4:] == ["--group", "1", "--groups", "2"] and "--group" not in one[0]["spec"]["template"]["spec"][
        "containers"][0]["command"]
