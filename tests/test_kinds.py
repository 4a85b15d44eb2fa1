"""One vocabulary of kinds: `TargetKind`, read by the library, the checkpoints, the CLI and the
fake, and the registry through which resources rebuild targets of each kind."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from d360_async import Client, TargetKind, target_from_spec
from d360_async._core._kinds import ALIASES
from d360_async._resources import registered_kinds
from d360_async._resources._resource_target import register_kind
from d360_async.cli._kinds import KINDS, lookup_kind
from d360_async.smartdocumentor import SmartDocumentorClient

PROJECT = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"
EXPORT = "0f8fad5b-d9cb-469f-a165-70867728950e"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_canonical_names() -> None:
    assert [k.value for k in TargetKind] == [
        "v3.export",
        "v3.drive_task",
        "v3.import",
        "v3.api_reference",
        "v2.delete_file",
        "v2.export",
        "v2.import",
        "smartdocumentor.task",
    ]
    # A str enum: equal to its name, serialised as it, usable as a JSON key.
    assert TargetKind.V3_EXPORT == "v3.export"
    assert json.dumps({TargetKind.V3_EXPORT: [TargetKind.V2_EXPORT]}) == (
        '{"v3.export": ["v2.export"]}'
    )
    assert f"{TargetKind.SMARTDOCUMENTOR_TASK}" == "smartdocumentor.task"


@pytest.mark.parametrize("kind", list(TargetKind))
def test_what_each_kind_says_of_itself(kind: TargetKind) -> None:
    assert kind.api == kind.value.split(".")[0]
    assert kind.api in {"v3", "v2", "smartdocumentor"}
    assert kind.in_project is (kind.api == "v3")
    assert kind.label.split()[0] in {"V3", "V2", "SmartDocumentor"}
    assert TargetKind.parse(kind.value) is kind
    assert TargetKind.parse(f"  {kind.value.upper()} ") is kind
    assert TargetKind.parse(kind) is kind
    assert not TargetKind.is_alias(kind.value)


@pytest.mark.parametrize(("alias", "kind"), sorted(ALIASES.items()))
def test_old_spellings_are_read_as_aliases(alias: str, kind: TargetKind) -> None:
    assert TargetKind.parse(alias) is kind
    assert TargetKind.is_alias(alias)
    assert alias not in {k.value for k in TargetKind}


def test_the_old_cli_and_fake_spellings_are_all_aliases() -> None:
    # The command line's documented kinds of 0.1.0 and the fake's seed kinds.
    cli = {"exports", "tasks", "imports", "v2-deletes", "sd-tasks"}
    fake = {"export", "drive_task", "import", "api_reference", "v2_delete", "v2_export"}
    fake |= {"v2_import", "sd_task"}
    assert cli | fake <= set(ALIASES)


@pytest.mark.parametrize("name", ["", "v3", "export.v3", "v4.export", "exportss", None, 3])
def test_an_unknown_kind_is_refused_with_the_canonical_names(name: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown kind .*v3\.export, v3\.drive_task"):
        TargetKind.parse(name)


def test_every_kind_is_registered_by_a_resource() -> None:
    assert registered_kinds() == set(TargetKind)


def test_a_kind_is_built_by_one_resource_class() -> None:
    with pytest.raises(RuntimeError, match="already built by ExportsResource"):
        register_kind(TargetKind.V3_EXPORT, object, lambda r, spec: r)


def _targets(client: Client, sd: SmartDocumentorClient) -> list[Any]:
    return [
        client.exports.target(PROJECT, EXPORT),
        client.drive.target(PROJECT, "task-1"),
        client.imports.target(PROJECT, "import-1"),
        client.api_references.target(PROJECT, "ref-1", since="2025-01-01T00:00:00+00:00"),
        client.v2.delete_file_target("del-1"),
        client.v2.exports.target("exp-1"),
        client.v2.imports.target("imp-1"),
        sd.tasks.target(task_id=12),
        sd.tasks.target(external_id="ext/1"),
    ]


async def test_every_kind_round_trips_through_its_spec() -> None:
    async with (
        Client(api_token="t", v2_api_token="v", base_url="http://127.0.0.1:9") as client,
        SmartDocumentorClient(
            client_id="i", client_secret="s", base_url="http://127.0.0.1:9"
        ) as sd,
    ):
        targets = _targets(client, sd)
        assert {t.kind for t in targets} == set(TargetKind)
        for target in targets:
            spec = target.to_spec()
            assert type(spec["kind"]) is str
            assert spec["kind"] == target.kind
            json.dumps(spec)  # plain JSON
            rebuilt = target_from_spec([client, sd], spec)
            assert rebuilt == target
            assert rebuilt.to_spec() == spec
            assert rebuilt.kind is target.kind
            assert rebuilt.key.startswith(f"{target.kind.value}/")


async def test_a_spec_with_an_old_kind_name_still_loads() -> None:
    async with Client(api_token="t", base_url="http://127.0.0.1:9") as client:
        rebuilt = target_from_spec(client, {"kind": "exports", "project_id": PROJECT, "id": EXPORT})
        assert rebuilt == client.exports.target(PROJECT, EXPORT)
        assert rebuilt.to_spec()["kind"] == "v3.export"  # written canonical again


async def test_a_resource_can_rebuild_its_own_kind() -> None:
    async with Client(api_token="t", base_url="http://127.0.0.1:9") as client:
        spec = client.exports.target(PROJECT, EXPORT).to_spec()
        assert target_from_spec(client.exports, spec).key == f"v3.export/{PROJECT}/{EXPORT}"
        with pytest.raises(ValueError, match="none of the given clients"):
            target_from_spec(client.drive, spec)


async def test_the_client_missing_the_token_passes_to_the_next() -> None:
    spec = {"kind": "v2.export", "id": "exp-1"}
    async with (
        Client(api_token="t", base_url="http://127.0.0.1:9") as v3_only,
        Client(v2_api_token="v", base_url="http://127.0.0.1:9") as v2_only,
    ):
        with pytest.raises(ValueError, match=r"none of the given clients can build a 'v2\.export'"):
            target_from_spec(v3_only, spec)
        assert target_from_spec([v3_only, v2_only], spec).key == "v2.export/exp-1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "JSON object"),
        ({"id": "x"}, "unknown target kind None"),
        ({"kind": "webhook", "id": "x"}, "unknown target kind 'webhook'"),
        ({"kind": "v3.export", "id": EXPORT}, "no 'project_id'"),
        ({"kind": "v3.export", "project_id": PROJECT, "id": "../x"}, "export_id"),
        ({"kind": "v3.api_reference", "project_id": PROJECT, "id": "r", "since": 3}, "since"),
    ],
)
async def test_bad_specs_are_refused(spec: Any, message: str) -> None:
    async with Client(api_token="t", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ValueError, match=re.escape(message)):
            target_from_spec(client, spec)


@pytest.mark.parametrize(
    ("typed", "kind"),
    [
        ("exports", TargetKind.V3_EXPORT),
        ("tasks", TargetKind.V3_DRIVE_TASK),
        ("imports", TargetKind.V3_IMPORT),
        ("v2-deletes", TargetKind.V2_DELETE_FILE),
        ("sd-tasks", TargetKind.SMARTDOCUMENTOR_TASK),
        ("v3.export", TargetKind.V3_EXPORT),
        ("smartdocumentor.task", TargetKind.SMARTDOCUMENTOR_TASK),
    ],
)
def test_the_cli_reads_old_and_canonical_names_and_prints_the_canonical(
    typed: str, kind: TargetKind
) -> None:
    found = lookup_kind(typed)
    assert found.kind is kind
    assert found.name == kind.value


def test_the_cli_kinds_are_documented_by_their_canonical_names() -> None:
    page = (DOCS / "cli.md").read_text()
    table = page[page.index("## Kinds of operation") :].split("\n## ")[0]
    for kind in KINDS:
        assert f"| `{kind.value}` |" in table, kind
