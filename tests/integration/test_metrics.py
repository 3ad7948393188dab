"""/metrics in the Prometheus text format."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from hookyard.tokens import hash_token
from tests.conftest import basic_config


async def test_metrics_count_ingest_rejections_commits_and_attempts(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        assert (await hy.client.get("/metrics")).status_code == 401
        await hy.client.post("/in/open", content=b"one")
        await hy.client.post("/in/github", content=b"forged")
        await receiver.wait_for(1)
        await asyncio.sleep(0.2)
        hy.service.store.ensure_token("reader", hash_token("hky_r"), "read")
        answer = await hy.client.get("/metrics", headers={"authorization": "Bearer hky_r"})
    assert answer.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert samples[("hookyard_ingest_total", (("outcome", "accepted"), ("source", "open")))] == 1
    key = ("hookyard_rejected_total", (("reason", "missing_signature"), ("source", "github")))
    assert samples[key] == 1
    assert samples[("hookyard_attempts_total", (("class", "2xx"), ("destination", "app")))] == 1
    assert samples[("hookyard_commits_total", ())] >= 1
    state = (("destination", "app"), ("state", "active"))
    assert samples[("hookyard_destination_state", state)] == 1
