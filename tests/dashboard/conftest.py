from tests.dataspace.conftest import mesh  # noqa: F401 - the dataspace city and control plane (review panel test)
