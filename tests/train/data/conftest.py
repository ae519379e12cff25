import pytest

from tests.train.data.shardset import demo_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)
