"""`Client()` takes its tokens and base URL from the environment when they are not passed."""

from __future__ import annotations

import pytest

from d360_async import Client, MissingCredential, Region
from d360_async.testing import FakeDocument360


async def test_token_and_base_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        monkeypatch.setenv("D360_API_TOKEN", fake.api_token)
        monkeypatch.setenv("D360_V2_API_TOKEN", fake.v2_api_token)
        monkeypatch.setenv("D360_BASE_URL", fake.url)
        (task_id,) = fake.seed("v3.drive_task", 1)
        (delete_id,) = fake.seed("v2.delete_file", 1)
        async with Client() as client:
            assert repr(client) == f"<Client {fake.url} open>"
            task = await client.drive.get_task(fake.project_id, task_id)
            deletion = await client.v2.delete_file_status(delete_id)
        assert str(task.task_id) == task_id
        assert deletion.task_id == delete_id
        assert fake.stats.auth_failures == 0


async def test_an_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        monkeypatch.setenv("D360_API_TOKEN", "not-the-token")
        monkeypatch.setenv("D360_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
        (task_id,) = fake.seed("v3.drive_task", 1)
        async with Client(api_token=fake.api_token, base_url=fake.url) as client:
            await client.drive.get_task(fake.project_id, task_id)
        assert fake.stats.auth_failures == 0


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_token_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("D360_API_TOKEN", value)
    with pytest.raises(MissingCredential, match="D360_API_TOKEN") as info:
        Client()
    assert "D360_V2_API_TOKEN" in str(info.value)


def test_without_d360_base_url_the_eu_host_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_API_TOKEN", "t")
    assert repr(Client()) == f"<Client {Region.EU.value} open>"
    monkeypatch.setenv("D360_BASE_URL", " ")
    assert Region.EU.value in repr(Client())


def test_only_a_v2_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_V2_API_TOKEN", "v2")
    client = Client()
    with pytest.raises(MissingCredential, match="D360_API_TOKEN"):
        _ = client.exports.auth
    assert client.v2.auth.secrets() == ("v2",)


def test_the_token_never_shows_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_API_TOKEN", "s3cr3t-token-value")
    client = Client()
    assert "s3cr3t" not in repr(client)
    assert "s3cr3t" not in repr(client.exports)
