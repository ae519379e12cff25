"""Tests on a live one-node SLURM cluster (engines/slurm_cluster.sh), marked `cluster`. They skip, with
the reason, where SLURM cannot be installed or started (not root, no apt-get)."""

import pytest

from action100m.cluster.slurm import ClusterUnavailable, cluster_down, cluster_running, cluster_up


@pytest.fixture(scope="session")
def slurm_env():
    """os.environ with SLURM_CONF of the running cluster; a cluster this fixture started is stopped at the
    end of the session, one that was running before (CI starts it) is left running."""
    was_running = cluster_running()
    try:
        env = cluster_up()
    except ClusterUnavailable as err:
        pytest.skip(f"no SLURM cluster: {err}")
    yield env
    if not was_running:
        cluster_down()
