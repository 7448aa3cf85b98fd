"""``demotrace server account add|list|disable``: portal accounts, made on the collector's host (the
first admin account has nobody to make it through the portal). Passwords come from a prompt or a file,
never from the command line, where other users could read them in the process list."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from demotrace.cli.shared import console, fail

if TYPE_CHECKING:
    from demotrace.collector.accounts import LocalAccounts

account_app = typer.Typer(help="Portal accounts: employees, admins and data engineers.", no_args_is_help=True)

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Collector data folder (default: see `demotrace paths`)."),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DEMOTRACE_DATABASE_URL", help="SQLAlchemy URL of the database."),
]
# Who the audit log names for accounts made here: someone with the collector host's shell.
CLI_ACTOR = "server-cli"


def _open_accounts(data: Path | None, database_url: str | None) -> LocalAccounts:
    from demotrace.collector.accounts import LocalAccounts
    from demotrace.collector.store import MetadataStore, default_database_url
    from demotrace.collector.store.account_store import AccountStore
    from demotrace.collector.store.migrate import SchemaError
    from demotrace.device.paths import default_collector_dir

    data = data or default_collector_dir()
    data.mkdir(parents=True, exist_ok=True)
    try:
        store = MetadataStore.from_url(database_url or default_database_url(data))
    except SchemaError as error:
        raise fail(str(error)) from error
    return LocalAccounts(AccountStore(store.engine))


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as error:
            raise fail(f"cannot read the password file: {error}") from error
        if not lines or not lines[0]:
            raise fail(f"the password file {password_file} is empty: its first line is the password")
        return lines[0]
    first: str = typer.prompt("Password", hide_input=True)
    if typer.prompt("Password again", hide_input=True) != first:
        raise fail("the two passwords differ")
    return first


@account_app.command("add")
def account_add(
    name: Annotated[str, typer.Argument(help="Account name (letters, digits, . _ - @).")],
    role: Annotated[str, typer.Option("--role", help="employee, admin or data_engineer.")],
    person: Annotated[
        str | None,
        typer.Option("--person", help="Employees: the person id their devices are enrolled for."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file", help="Read the password from this file's first line (else a prompt)."
        ),
    ] = None,
    data: DataOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Make a portal account."""
    from demotrace.collector.accounts import AccountError, Role

    try:
        chosen = Role(role)
    except ValueError:
        raise fail(f"unknown role {role!r}: employee, admin or data_engineer") from None
    accounts = _open_accounts(data, database_url)
    try:
        accounts.check_new(name, chosen, person)  # before the password is asked for
        account = accounts.add(name, chosen, _password(password_file), person, CLI_ACTOR)
    except AccountError as error:
        raise fail(str(error)) from error
    tied = f" for person {account.person_id}" if account.person_id else ""
    console.print(f"Account {account.name} ({account.role.value}){tied} made: sign in at /login.")


@account_app.command("list")
def account_list(data: DataOption = None, database_url: DatabaseUrlOption = None) -> None:
    """List the portal accounts."""
    table = Table("name", "role", "person", "state")
    for account, disabled in _open_accounts(data, database_url).list():
        table.add_row(
            account.name, account.role.value, account.person_id or "-", "disabled" if disabled else "active"
        )
    console.print(table)


@account_app.command("disable")
def account_disable(
    name: Annotated[str, typer.Argument(help="Account name.")],
    data: DataOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Disable an account: its sign-ins are refused and its open sessions end at once."""
    from demotrace.collector.accounts import AccountError

    try:
        _open_accounts(data, database_url).disable(name, CLI_ACTOR)
    except AccountError as error:
        raise fail(str(error)) from error
    console.print(f"Account {name} disabled; its sessions are ended.")
