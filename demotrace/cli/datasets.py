"""``demotrace datasets check DIR``: is a built dataset still what its source holds, or was any of its
sessions deleted since (a person's deletion, an exemption, retention)? Exit 0: current; 1: stale
(rebuild it: the rebuild leaves the deleted sessions out); 2: cannot tell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.build import DatabaseUrlOption, collector_location
from demotrace.cli.shared import console, fail
from demotrace.wording import plural

datasets_app = typer.Typer(help="Check datasets built from a collector against it.", no_args_is_help=True)


@datasets_app.command("check")
def check(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `demotrace build`.")],
    from_server: Annotated[
        Path | None,
        typer.Option("--from-server", help="The collector data folder (default: the one in the manifest)."),
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Say whether any session the dataset was built from has since been deleted at the collector."""
    from demotrace.collector.store import CollectorLocation, LocationError, MetadataStore
    from demotrace.dataset.lineage import ManifestError, SourceSession, check_lineage, read_manifest
    from demotrace.dataset.privacy import PseudonymKeyError, Pseudonyms, default_key_path, read_key

    try:
        manifest = read_manifest(dataset)
        pseudonyms = Pseudonyms(read_key(default_key_path(dataset)))
    except (ManifestError, PseudonymKeyError, OSError) as error:
        raise fail(f"cannot check {dataset}: {error}") from error
    if manifest.source.get("kind") != "collector" and from_server is None and database_url is None:
        raise fail(
            f"{dataset} was built from a {manifest.source.get('kind')}, not a collector: "
            "give --from-server DIR or --database-url URL to check it against one"
        )
    if from_server is None and database_url is None:
        if "data_dir" in manifest.source:
            from_server = Path(manifest.source["data_dir"])
        elif "***" not in manifest.source.get("database", "***"):
            database_url = manifest.source["database"]
        else:
            raise fail("the manifest's database URL has no password in it: give --database-url")
    location = (
        collector_location(from_server, database_url, None, None)
        if from_server is not None
        else CollectorLocation(database_url=database_url)
    )
    try:
        location.check_readable()
        # Only the metadata is read: no blob, no master key needed.
        store = MetadataStore.from_url(location.database(), migrate=False)
    except LocationError as error:
        raise fail(str(error)) from error
    try:
        current = [
            SourceSession(row.device_id, row.session_id, row.batches)
            for row in store.sessions(received_by=manifest.as_of)
        ]
    finally:
        store.close()
    report = check_lineage(manifest, pseudonyms, current)
    if not report.stale:
        console.print(
            f"{dataset}: current ({plural(report.sessions, 'session')}, none deleted since the build)"
        )
        return
    console.print(
        f"{dataset}: STALE: of its {plural(report.sessions, 'session')}, {len(report.deleted)} "
        f"{'was' if len(report.deleted) == 1 else 'were'} deleted at the "
        f"source and {len(report.reduced)} lost records (retention) since the build. Rebuild it with "
        "`demotrace build` from the same source: the rebuild leaves them out."
    )
    for entry in report.deleted:
        console.print(f"  deleted  session {entry.session} (device {entry.device})")
    for entry in report.reduced:
        console.print(f"  reduced  session {entry.session} (device {entry.device})")
    raise typer.Exit(1)


def register_datasets_commands(app: typer.Typer) -> None:
    """Add datasets (check) to the main ``demotrace`` command."""
    app.add_typer(datasets_app, name="datasets")
