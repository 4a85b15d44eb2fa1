"""Integrations with other frameworks, each behind its own optional extra.

* [fastapi][d360_async.contrib.fastapi] (extra ``fastapi``): one client per application, a
  dependency that hands it to endpoints, and watches streamed as server-sent events.

Nothing here is imported by ``import d360_async``; import the submodule you need.
"""

__all__: list[str] = []
