from __future__ import annotations

import contextlib
import uuid

import pytest

from dataspace.api import create_app
from dataspace.plane import ControlPlane
from tests.dataspace.harness import Callbacks, Mesh, ServerThread, city_yaml, free_port
from tests.mesh_fixtures import City


@contextlib.contextmanager
def running_mesh(directory, client_config, u: str):
    city = City(u, directory / "city.yaml", directory / "keys", client_config)
    city.apply(city_yaml(u))
    port = free_port()
    plane = ControlPlane(client_config, city.keys, f"http://127.0.0.1:{port}").start()
    server = ServerThread(create_app(plane), port).start()
    try:
        yield Mesh(city, plane, server)
    finally:
        server.stop()
        plane.close()


@contextlib.contextmanager
def callback_server():
    cb = Callbacks()
    server = ServerThread(cb.app()).start()
    cb.url = server.url + "/cb"
    try:
        yield cb
    finally:
        server.stop()


@pytest.fixture
def mesh(tmp_path, client_config, unique):
    """A fresh city and control plane for one test."""
    with running_mesh(tmp_path, client_config, unique) as m:
        yield m


@pytest.fixture(scope="module")
def module_mesh(tmp_path_factory, client_config):
    """One city and control plane shared by the tests of a module (each test uses its own processes)."""
    with running_mesh(tmp_path_factory.mktemp("mesh"), client_config, uuid.uuid4().hex[:8]) as m:
        yield m


@pytest.fixture
def callbacks():
    with callback_server() as cb:
        yield cb


@pytest.fixture(scope="module")
def module_callbacks():
    with callback_server() as cb:
        yield cb
