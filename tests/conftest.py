"""Fixtures shared by the whole suite; the tiny settings and helpers they use are in tests/helpers.py."""
from __future__ import annotations

import os

import pytest

from searchspace import SearchSpace


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The tests' own machine cache (storage mirrors, decoded image folders), never the user's home: also for the
    launch.py processes they start, which inherit it. A test may still point MIXERNAS_CACHE elsewhere."""
    previous = os.environ.get("MIXERNAS_CACHE")
    os.environ["MIXERNAS_CACHE"] = str(tmp_path_factory.mktemp("mixernas-cache"))
    yield
    if previous is None:
        os.environ.pop("MIXERNAS_CACHE", None)
    else:
        os.environ["MIXERNAS_CACHE"] = previous


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.default()


@pytest.fixture(scope="session")
def s3_server():
    """A live S3 endpoint (moto's server) for the whole session, with the credentials it takes in the environment
    the launch.py processes inherit; stopped after."""
    from tests.helpers import S3Server

    keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    previous = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    server = S3Server()
    yield server
    server.stop()
    for k, v in previous.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(params=["file", "s3"])
def storage_uri(request, tmp_path):
    """A folder URI, and a prefix on a live S3 endpoint (moto's server): the same runs through either."""
    if request.param == "file":
        return f"file://{tmp_path / 'bucket'}"
    return request.getfixturevalue("s3_server").uri(f"runs-{tmp_path.name.lower().replace('_', '-')}"[:60])
