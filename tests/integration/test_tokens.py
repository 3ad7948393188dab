"""Scoped tokens and the audit log."""

from __future__ import annotations

from tests.conftest import basic_config


async def test_scopes_revocation_and_audit(hookyard_factory, receiver):
    config = basic_config(receiver.url) + '\n[sources.orders]\nkind = "api"\n'
    async with hookyard_factory(config) as hy, hy.api() as api:
        made = await api.post("/api/v1/tokens", json={"name": "dashboards", "scope": "read"})
        assert made.status_code == 201
        reader = made.json()
        assert reader["token"].startswith("hky_") and reader["scope"] == "read"
        publisher = (
            await api.post("/api/v1/tokens", json={"name": "app", "scope": "publish:orders"})
        ).json()
        bad = await api.post("/api/v1/tokens", json={"name": "x", "scope": "publish:nope"})
        assert bad.status_code == 422

        def auth(token: str) -> dict[str, str]:
            return {"authorization": f"Bearer {token}"}

        # A read-only token reads but cannot act; a publish token cannot read.
        assert (await hy.client.get("/api/v1/events", headers=auth(reader["token"]))).is_success
        act = await hy.client.post("/api/v1/destinations/app/pause", headers=auth(reader["token"]))
        assert act.status_code == 403
        read = await hy.client.get("/api/v1/events", headers=auth(publisher["token"]))
        assert read.status_code == 403

        listed = (await api.get("/api/v1/tokens")).json()
        assert {"dashboards", "app"} <= {t["name"] for t in listed}
        assert "token" not in str([sorted(t) for t in listed]).replace("tokens", "")
        assert all("hash" not in t for t in listed)

        # Revocation takes effect on the very next request.
        assert (await api.delete(f"/api/v1/tokens/{reader['id']}")).status_code == 204
        after = await hy.client.get("/api/v1/events", headers=auth(reader["token"]))
        assert after.status_code == 401
        assert (await api.delete(f"/api/v1/tokens/{reader['id']}")).status_code == 404

        await api.post("/api/v1/destinations/app/pause")
        entries = (await api.get("/api/v1/audit")).json()["data"]
    actions = [(e["action"], e["target"]) for e in entries]
    assert actions[0] == ("destination.paused", "app")
    assert ("token.revoke", reader["id"]) in actions
    assert ("token.create", reader["id"]) in actions
    assert all(e["token_name"] == "admin (generated)" for e in entries)
    assert reader["token"] not in str(entries)
