"""The identifier checks the library runs before any id goes into a request URL.

Every resource method passes its ids through these, so a value such as ``"../other"`` or
``"a%2Fb"`` can never address a different resource than the caller meant; they are public for
code that takes ids from users (a CLI, a form) and wants the same answer before it calls:

```python
from d360_async.ids import uuid_id

export_id = uuid_id(form["export"], name="export id")  # ValueError names the field
```

* `uuid_id`: a canonical, hyphenated UUID (or a `uuid.UUID`); returns the lowercase text.
* `safe_token`: 1-128 ASCII letters, digits, ``_`` or ``-`` (drive task, import, V2 ids).
* `sd_task_id`: a SmartDocumentor task id, an integer >= 1.
* `external_id`: non-empty text without control characters (it travels in the query string).

Each raises `ValueError` naming the value's role and never echoes more of it than is safe.
"""

from __future__ import annotations

from d360_async._core._ids import external_id, safe_token, sd_task_id, uuid_id

__all__ = ["external_id", "safe_token", "sd_task_id", "uuid_id"]
