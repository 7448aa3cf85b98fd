"""`demotrace server account add|list|disable`: portal accounts made on the collector's host, the
password from a prompt or a file (never an argument), and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from demotrace.cli.main import app
from demotrace.collector.accounts import LocalAccounts, Role
from demotrace.collector.store import MetadataStore, default_database_url
from demotrace.collector.store.account_store import AccountStore

PASSWORD = "a long enough password"


def accounts_in(data: Path) -> LocalAccounts:
    return LocalAccounts(AccountStore(MetadataStore.from_url(default_database_url(data)).engine))


def test_an_admin_account_is_made_from_a_password_file_and_can_sign_in(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "server",
            "account",
            "add",
            "ada",
            "--role",
            "admin",
            "--password-file",
            str(password_file),
            "--data",
            str(data),
        ],
    )
    assert made.exit_code == 0, made.output
    assert "Account ada (admin) made" in made.output
    account = accounts_in(data).authenticate("ada", PASSWORD)
    assert account is not None and account.role is Role.ADMIN
    listed = runner.invoke(app, ["server", "account", "list", "--data", str(data)])
    assert "ada" in listed.output and "active" in listed.output
    disabled = runner.invoke(app, ["server", "account", "disable", "ada", "--data", str(data)])
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    assert accounts_in(data).authenticate("ada", PASSWORD) is None


def test_the_password_is_asked_twice_at_the_prompt(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    runner = CliRunner()
    add = ["server", "account", "add", "dana", "--role", "data_engineer", "--data", str(data)]
    differ = runner.invoke(app, add, input=f"{PASSWORD}\nsomething else entirely\n")
    assert differ.exit_code != 0 and "the two passwords differ" in differ.output
    same = runner.invoke(app, add, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert same.exit_code == 0, same.output
    assert PASSWORD not in same.output
    assert accounts_in(data).authenticate("dana", PASSWORD) is not None


def test_mistakes_get_one_line_and_no_traceback(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    password_file = tmp_path / "pw"
    password_file.write_text("short\n")
    runner = CliRunner()
    cases = {
        ("--role", "root"): "unknown role 'root'",
        ("--role", "employee"): "needs --person",
        ("--role", "admin"): "12 to",
    }
    for options, message in cases.items():
        result = runner.invoke(
            app,
            [
                "server",
                "account",
                "add",
                "x",
                *options,
                "--password-file",
                str(password_file),
                "--data",
                str(data),
            ],
        )
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    missing = runner.invoke(
        app,
        [
            "server",
            "account",
            "add",
            "x",
            "--role",
            "admin",
            "--password-file",
            str(tmp_path / "nope"),
            "--data",
            str(data),
        ],
    )
    assert missing.exit_code != 0 and "cannot read the password file" in missing.output
    unknown = runner.invoke(app, ["server", "account", "disable", "nobody", "--data", str(data)])
    assert unknown.exit_code != 0 and "no account named nobody" in unknown.output
