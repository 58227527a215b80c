from __future__ import annotations

import pytest

from dataspace.api import create_app
from dataspace.plane import ControlPlane
from tests.mesh_fixtures import City

from tests.dataspace.harness import Callbacks, Mesh, ServerThread, city_yaml, free_port


@pytest.fixture
def mesh(tmp_path, client_config, unique):
    city = City(unique, tmp_path / "city.yaml", tmp_path / "keys", client_config)
    city.apply(city_yaml(unique))
    port = free_port()
    plane = ControlPlane(client_config, city.keys, f"http://127.0.0.1:{port}").start()
    server = ServerThread(create_app(plane), port).start()
    try:
        yield Mesh(city, plane, server)
    finally:
        server.stop()
        plane.close()


@pytest.fixture
def callbacks():
    cb = Callbacks()
    server = ServerThread(cb.app()).start()
    cb.url = server.url + "/cb"
    try:
        yield cb
    finally:
        server.stop()
