"""Secrets stay out of URLs, reprs, pickles and free text."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d360_async._core._redact import (
    REDACTED,
    SECRET_QUERY_PARAMETERS,
    UNPARSABLE_URL,
    RedactingFilter,
    Secret,
    fingerprint,
    library_logger,
    redact_text,
    redact_url,
    scrub,
    secret_query_values,
)

SAS = (
    "https://x.blob.core.windows.net/exports/a.zip"
    "?sv=2023-01-03&se=2026-01-01T00%3A00Z&sr=b&sp=r&sig=abc%2Bdef"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            SAS,
            "https://x.blob.core.windows.net/exports/a.zip"
            "?sv=REDACTED&se=REDACTED&sr=b&sp=REDACTED&sig=REDACTED",
            id="azure-sas",
        ),
        pytest.param(
            "https://acct.blob.core.windows.net/c/b.zip?skoid=o&sktid=t&skt=2026&ske=2027"
            "&sks=b&skv=2023&st=2026-01-01&rscd=attachment%3B%20filename%3Db.zip",
            "https://acct.blob.core.windows.net/c/b.zip?skoid=REDACTED&sktid=REDACTED"
            "&skt=REDACTED&ske=REDACTED&sks=REDACTED&skv=REDACTED&st=REDACTED"
            "&rscd=attachment%3B%20filename%3Db.zip",
            id="azure-user-delegation-sas",
        ),
        pytest.param(
            "https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F2026&X-Amz-Security-Token=tok&X-Amz-Signature=f00d",
            "https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED",
            id="aws-presigned",
        ),
        pytest.param(
            "https://storage.googleapis.com/b/o?X-Goog-Signature=abc&X-Goog-Date=2026",
            "https://storage.googleapis.com/b/o?X-Goog-Signature=REDACTED&X-Goog-Date=2026",
            id="gcs-signed",
        ),
        pytest.param(
            "https://user:hunter2@apihub.document360.io:8443/v2/Project/Export/1?x=1",
            "https://apihub.document360.io:8443/v2/Project/Export/1?x=1",
            id="userinfo",
        ),
        pytest.param(
            "https://a@b:c@host/p", "https://host/p", id="userinfo-with-raw-at-in-password"
        ),
        pytest.param(
            "https://host/cb?code=xyz&state=keep&client_secret=s&Access_Token=t&API_TOKEN=u",
            "https://host/cb?code=REDACTED&state=keep&client_secret=REDACTED"
            "&Access_Token=REDACTED&API_TOKEN=REDACTED",
            id="oauth-and-case-insensitive",
        ),
        pytest.param(
            "https://host/p?token=a&token=b&apitoken=c&key=d&signature=e",
            "https://host/p?token=REDACTED&token=REDACTED&apitoken=REDACTED&key=REDACTED"
            "&signature=REDACTED",
            id="repeated-and-aliases",
        ),
        pytest.param(
            "https://host/p?si%67=abc&%20token%20=x",
            "https://host/p?si%67=REDACTED&%20token%20=REDACTED",
            id="encoded-names",
        ),
        pytest.param(
            "https://host/p?monkey=1&signature_version=2&sr=b&tokens=3&sigma=4",
            "https://host/p?monkey=1&signature_version=2&sr=b&tokens=3&sigma=4",
            id="lookalikes-kept",
        ),
        pytest.param(
            "https://host/p?sig&token=&a=%2F+b",
            "https://host/p?sig&token=REDACTED&a=%2F+b",
            id="no-value-and-empty-value",
        ),
        pytest.param(
            "https://host/cb#access_token=abc&token_type=bearer",
            "https://host/cb#access_token=REDACTED&token_type=bearer",
            id="token-in-fragment",
        ),
        pytest.param(
            "/v3/projects/p/exports?page=1&api_token=t",
            "/v3/projects/p/exports?page=1&api_token=REDACTED",
            id="relative",
        ),
        pytest.param("http://[::1]:8080/x?sig=1", "http://[::1]:8080/x?sig=REDACTED", id="ipv6"),
        pytest.param(
            "https://héllo.example/ü?sig=ß", "https://héllo.example/ü?sig=REDACTED", id="non-ascii"
        ),
        pytest.param("https://host", "https://host", id="bare-host"),
        pytest.param("", "", id="empty"),
        pytest.param("not a url", "not a url", id="not-a-url"),
        pytest.param("http://[::1/x?sig=secret", UNPARSABLE_URL, id="unparsable-ipv6"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected


def test_every_listed_parameter_is_redacted() -> None:
    query = "&".join(
        f"{name.upper()}=value{index}" for index, name in enumerate(sorted(SECRET_QUERY_PARAMETERS))
    )
    redacted = redact_url(f"https://h/p?{query}")
    assert "value" not in redacted
    assert redacted.count(REDACTED) == len(SECRET_QUERY_PARAMETERS)


_names = st.sampled_from(sorted(SECRET_QUERY_PARAMETERS))
_values = st.text(st.characters(codec="utf-8", exclude_characters="&#"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, database=None)
@given(
    secret_names=st.lists(_names, min_size=1, max_size=4),
    secret_values=st.lists(_values, min_size=1, max_size=4),
    upper=st.booleans(),
)
def test_secret_values_never_survive(
    secret_names: list[str], secret_values: list[str], upper: bool
) -> None:
    pairs = [
        (name.upper() if upper else name, f"Q7X{index}{value}")
        for index, (name, value) in enumerate(zip(secret_names, secret_values, strict=False))
    ]
    url = "https://host/path?keep=1&" + "&".join(f"{n}={v}" for n, v in pairs) + "#f"
    redacted = redact_url(url)
    assert "Q7X" not in redacted or redacted == UNPARSABLE_URL
    assert "keep=1" in redacted or redacted == UNPARSABLE_URL


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(max_size=60))
def test_redact_url_never_raises_and_is_stable(url: str) -> None:
    once = redact_url(url)
    assert isinstance(once, str)
    assert redact_url(redact_url(once)) == redact_url(once)


def test_fingerprint() -> None:
    value = fingerprint("my-token")
    assert value.startswith("fp:")
    assert len(value) == 3 + 12
    assert int(value[3:], 16) >= 0
    assert value == fingerprint("my-token")
    assert value != fingerprint("my-token2")
    assert "my-token" not in value


class TestSecret:
    VALUE = "d360-tok-6f1c2a"

    def test_get(self) -> None:
        assert Secret(self.VALUE).get() == self.VALUE

    @pytest.mark.parametrize(
        "render",
        [
            repr,
            str,
            lambda s: f"{s}",
            lambda s: f"{s!r}",
            lambda s: repr([s]),
            format,
        ],
        ids=["repr", "str", "fstring", "fstring-r", "in-list", "format"],
    )
    def test_rendering_never_shows_the_value(self, render: object) -> None:
        assert callable(render)
        text = render(Secret(self.VALUE))
        assert self.VALUE not in text
        assert "Secret('…')" in text

    def test_logging_never_shows_the_value(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("d360_async.test").debug("token %s %r", *[Secret(self.VALUE)] * 2)
        assert self.VALUE not in caplog.text

    def test_equality_and_hash(self) -> None:
        a, b, c = Secret(self.VALUE), Secret(self.VALUE), Secret("other")
        assert a == b
        assert a != c
        assert hash(a) == hash(b)
        assert len({a, b, c}) == 2
        assert a != self.VALUE

    def test_fingerprint(self) -> None:
        assert Secret(self.VALUE).fingerprint == fingerprint(self.VALUE)

    def test_refuses_pickle(self) -> None:
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(Secret(self.VALUE))
        with pytest.raises(TypeError):
            pickle.dumps({"auth": [Secret(self.VALUE)]})

    def test_copy_is_the_same_object(self) -> None:
        secret = Secret(self.VALUE)
        assert copy.copy(secret) is secret
        assert copy.deepcopy({"k": secret})["k"] is secret

    def test_immutable(self) -> None:
        secret = Secret(self.VALUE)
        with pytest.raises(AttributeError):
            secret._value = "x"
        with pytest.raises(AttributeError):
            del secret._value
        with pytest.raises(AttributeError):
            secret.__dict__  # noqa: B018 - slots: no instance dict to leak through vars()

    def test_only_wraps_str(self) -> None:
        with pytest.raises(TypeError, match="bytes"):
            Secret(b"abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        pytest.param("token=abc123 sent", ["abc123"], "token=*** sent", id="plain"),
        pytest.param("a abc abcdef", ["abc", "abcdef"], "a *** ***", id="longest-first"),
        pytest.param("q=a%2Fb+c and a/b c", ["a/b c"], "q=*** and ***", id="percent-encoded"),
        pytest.param("x", ["", "y"], "x", id="empty-secret-ignored"),
        pytest.param("Bearer s3", [Secret("s3")], "Bearer ***", id="secret-object"),
        pytest.param("nothing", [], "nothing", id="no-secrets"),
    ],
)
def test_redact_text(text: str, secrets: list[str | Secret], expected: str) -> None:
    assert redact_text(text, secrets) == expected


# -- scrub: the one redaction step for free text --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token 'Bearer abc.DEF-123' refused", "token 'Bearer ***' refused"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: ***"),
        ("api_token: v2secret, next", "api_token: ***, next"),
        ('{"api_token": "v2secret"}', '{"api_token": "***"}'),
        ("https://h/p?sv=1&sig=abc%2B&ok=2", "https://h/p?sv=REDACTED&sig=REDACTED&ok=2"),
        ('"sig": "abc"', '"sig": "REDACTED"'),
        ("code=abc&state=1", "code=REDACTED&state=1"),
        ("episode=3 season=2", "episode=3 season=2"),
        ("nothing to see", "nothing to see"),
        ("", ""),
    ],
)
def test_scrub_patterns(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert scrub(scrub(text)) == scrub(text)


def test_scrub_knows_every_live_secret_and_forgets_dropped_ones() -> None:
    secret = Secret("live-secret-42")
    assert scrub("x live-secret-42 y live-secret-42") == "x *** y ***"
    del secret
    import gc

    gc.collect()
    assert scrub("x live-secret-42") == "x live-secret-42", "a dropped secret is not held"


def test_scrub_ignores_very_short_live_secrets() -> None:
    short = Secret("t")
    assert scrub("the token was rejected") == "the token was rejected"
    assert redact_text("the token", [short]) == "***he ***oken"  # explicit secrets still count


def test_scrub_takes_extra_secrets() -> None:
    assert scrub("said abc", ["abc"]) == "said ***"


@given(st.text(max_size=200))
@settings(max_examples=200)
def test_scrub_is_total_and_idempotent(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


def test_secret_query_values() -> None:
    assert secret_query_values(SAS) == ("abc+def", "abc%2Bdef")
    assert secret_query_values("https://h/p?token=short&ok=1") == ()  # too short to scrub
    assert secret_query_values("https://h/p#access_token=0123456789") == (
        "0123456789",
        "0123456789",
    )
    assert secret_query_values("http://[::1") == ()


def test_the_filter_scrubs_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret("logged-secret-77")
    logger = library_logger("d360_async.test-redact")
    assert library_logger("d360_async.test-redact") is logger
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger="d360_async.test-redact"):
        logger.debug("sent %s to %s", "Bearer logged-secret-77", "https://h/?sig=abcdef")
        try:
            raise RuntimeError("boom logged-secret-77")
        except RuntimeError:
            logger.exception("failed with %r", secret.get())
    text = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "logged-secret-77" not in text
    assert "abcdef" not in text
    assert "RuntimeError: boom ***" in text
    del secret


def test_every_library_logger_redacts() -> None:
    import d360_async  # noqa: F401 - importing installs the filters

    names = ["d360_async", "d360_async.watch", "d360_async.ratelimit", "d360_async.exports"]
    names += ["d360_async.transport", "d360_async.hooks", "d360_async.client"]
    for name in names:
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters), name
