"""SmartDocumentor: task status over OAuth2 client credentials.

Vendor facts (SmartDocumentor API documentation, "Get task status"):

* Every call carries ``Authorization: Bearer <access token>``; the token comes from the OAuth2
  client-credentials grant at ``/connect/token`` (scope ``WebAPI``) and lives 3600 s, so it is
  cached and reused until shortly before it expires.  Concurrent callers that find no valid
  token wait for *one* token request; a 401 makes the next caller fetch a fresh token, once.
* ``GET /api/v1.0/external/sdtask/status`` takes ``taskId`` or ``externalId``: exactly one is
  required (the server answers 400 with an empty body otherwise, 404 with an empty body for an
  unknown task), so the choice is checked locally.
* ``GET .../sdtask/statuslistpaginated`` pages through tasks (``pageNumber``, ``pageSize``,
  filters); ``PATCH .../sdtask/restartprocessing?taskId=`` reprocesses a stuck task.

The client secret and the access token live in `Secret` and never
appear in a ``repr``, a log record or an exception.

For example:

```python
async with SmartDocumentorClient(client_id=..., client_secret=...) as sd:
    task = await sd.tasks.status(task_id=44)
```
"""

from __future__ import annotations

from d360_async._clients._smartdocumentor import DEFAULT_BASE_URL, SmartDocumentorClient
from d360_async._core._models import SmartDocumentorPage, SmartDocumentorTask
from d360_async._resources.smartdocumentor import SmartDocumentorTasks
from d360_async._transport._sd_auth import ClientCredentialsAuth

__all__ = [
    "DEFAULT_BASE_URL",
    "ClientCredentialsAuth",
    "SmartDocumentorClient",
    "SmartDocumentorPage",
    "SmartDocumentorTask",
    "SmartDocumentorTasks",
]
