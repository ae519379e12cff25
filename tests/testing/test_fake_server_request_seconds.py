"""The fake server's requests in flight over time (`request_seconds`), what benchmarks/build_pipeline.py
reads as the server's occupancy."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from action100m.testing.fake_server import FakeChatServer
from tests.testing.test_fake_server import chat, post

LATENCY_S = 0.3


def test_request_seconds_add_up_the_requests_in_flight_and_nothing_while_idle():
    with FakeChatServer(latency_s=LATENCY_S) as server:
        idle = server.request_seconds()
        time.sleep(0.2)
        assert server.request_seconds() == idle == 0.0
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: post(server, chat(server))[0], range(4)))
        assert statuses == [200] * 4
        busy = server.request_seconds()
        # four requests of LATENCY_S each, at once; a little more for reading and answering them
        assert 4 * LATENCY_S <= busy < 4 * LATENCY_S + 0.4
        time.sleep(0.2)
        assert server.request_seconds() == busy
