"""Layer 1, the protocol core: everything the library decides, and nothing that waits.

What lives here: phases and the vendor status tables (`_phase`, `_status`), ids, redaction,
the exception tree and error decoding (`_errors`, `_response`), retry decisions (`_retry`), the
typed models and their converter (`_models`), client configuration values (`_config`), the
target protocol (`_target_protocol`), the vocabulary of operation kinds (`_kinds`), the
lifecycle states (`_lifecycle`), rate-limit header parsing, policy estimation and budget arithmetic
(`_ratelimit/`), and the poll scheduler, its duration models, the watch's values and the
checkpoint format (`_watch/`).

What it may import: the standard library (but not asyncio), attrs and cattrs. Never asyncio,
anyio, aiohttp or redis, and nothing else of d360_async: time comes in as numbers, answers as
plain mappings, so every rule here is tested synchronously and fast. The import-linter contracts
in `pyproject.toml` check this in `make test`.
"""
