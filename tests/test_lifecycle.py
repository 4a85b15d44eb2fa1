"""`Lifecycle`: the transport (and so every client) and the watch move new -> open -> closed."""

from __future__ import annotations

import pytest

from d360_async import Client, D360Error, MissingCredential, watch
from d360_async._core._lifecycle import Lifecycle
from d360_async.smartdocumentor import SmartDocumentorClient


async def test_a_client_is_open_until_closed_and_stays_closed() -> None:
    client = Client(api_token="t", base_url="http://127.0.0.1:9")
    transport = client._transport
    assert transport.state is Lifecycle.OPEN
    assert repr(client).endswith(" open>")
    await client.aclose()
    assert transport.state is Lifecycle.CLOSED
    assert client.closed
    assert repr(client).endswith(" closed>")
    assert "state=closed" in repr(transport)
    await client.aclose()  # idempotent
    assert transport.state is Lifecycle.CLOSED
    with pytest.raises(RuntimeError, match="closed"):
        await transport.session()


async def test_the_smartdocumentor_client_reports_the_same_states() -> None:
    sd = SmartDocumentorClient(client_id="i", client_secret="s", base_url="http://127.0.0.1:9")
    assert repr(sd).endswith(" open>")
    await sd.aclose()
    assert repr(sd).endswith(" closed>")


async def test_a_watch_is_new_then_open_then_closed() -> None:
    w = watch([], keep_open=False)
    assert repr(w).startswith("<Watch new ")
    async with w:
        assert repr(w).startswith("<Watch open ")
    assert repr(w).startswith("<Watch closed ")


def test_missing_credential_is_one_class_of_the_tree_and_still_a_runtime_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("D360_API_TOKEN", raising=False)
    monkeypatch.delenv("D360_V2_API_TOKEN", raising=False)
    with pytest.raises(MissingCredential) as caught:
        Client(api_token=None, v2_api_token=None, base_url="http://127.0.0.1:9")
    assert isinstance(caught.value, D360Error)
    assert isinstance(caught.value, RuntimeError)
    assert "D360_API_TOKEN" in str(caught.value)
    assert "REDACTED" not in str(caught.value)  # the message is not mistaken for a secret
