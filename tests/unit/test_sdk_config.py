"""The client's config file and where a client's URL and token come from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.sdk.config import config_path, read_config, remove_config, write_config
from moorage.sdk.errors import ApiError, MoorageError
from moorage.sdk.target import resolve_target


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "MOORAGE_URL",
        "MOORAGE_TOKEN",
        "MOORAGE_ADMIN_TOKEN",
        "MOORAGE_PORT",
        "MOORAGE_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOORAGE_HOME", str(tmp_path / "no-home"))
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("MOORAGE_CLIENT_CONFIG", str(path))
    return path


def test_written_for_its_owner_only_and_read_back_exactly(clean_env: Path) -> None:
    odd = 'tok"en\\with\x7fodd\tcharacters é 🚀'
    assert write_config("http://moorage.example:8080", odd) == clean_env
    assert os.stat(clean_env).st_mode & 0o777 == 0o600
    assert read_config() == {"url": "http://moorage.example:8080", "token": odd}
    assert remove_config() == clean_env
    assert read_config() == {}
    assert remove_config() is None


def test_the_path_follows_xdg_when_not_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MOORAGE_CLIENT_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "moorage" / "config.toml"


def test_a_broken_file_is_named_not_ignored(clean_env: Path) -> None:
    clean_env.parent.mkdir(parents=True)
    clean_env.write_text("url = [unclosed")
    with pytest.raises(MoorageError, match="not valid TOML"):
        read_config()


def test_arguments_then_environment_then_the_file(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    write_config("http://from-file:1", "file-token")
    target = resolve_target()
    assert (target.url, target.token) == ("http://from-file:1", "file-token")
    assert "config file" in target.url_from
    monkeypatch.setenv("MOORAGE_URL", "http://from-env:2/")
    monkeypatch.setenv("MOORAGE_TOKEN", "env-token")
    target = resolve_target()
    assert (target.url, target.token, target.url_from) == (
        "http://from-env:2",
        "env-token",
        "MOORAGE_URL",
    )
    target = resolve_target("http://from-arg:3", "arg-token")
    assert (target.url, target.token, target.token_from) == (
        "http://from-arg:3",
        "arg-token",
        "--token",
    )


def test_no_token_anywhere_says_how_to_give_one() -> None:
    with pytest.raises(ApiError) as missing:
        resolve_target()
    assert missing.value.code == "no_token"
    assert "moorage login" in missing.value.message


def test_a_link_planted_at_the_path_is_replaced_never_written_through(clean_env: Path) -> None:
    clean_env.parent.mkdir(mode=0o700)
    loot = clean_env.parent.parent / "loot"
    loot.write_text("")
    clean_env.symlink_to(loot)
    write_config("http://moorage.example:8080", "secret-token")
    assert loot.read_text() == ""
    assert not clean_env.is_symlink()
    assert read_config()["token"] == "secret-token"
    assert [p.name for p in clean_env.parent.iterdir()] == ["config.toml"]  # no leftovers


def test_a_folder_others_can_write_to_is_refused(clean_env: Path) -> None:
    clean_env.parent.mkdir()
    clean_env.parent.chmod(0o777)
    with pytest.raises(MoorageError, match="can be written by others"):
        write_config("http://moorage.example:8080", "secret-token")
    assert not clean_env.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_config_file_of_another_user_is_not_read(clean_env: Path) -> None:
    write_config("http://evil.example", "their-token")
    os.chown(clean_env, 65534, 65534)
    with pytest.raises(MoorageError, match="belongs to another user"):
        read_config()


def test_the_kept_token_goes_only_to_the_url_it_was_kept_for(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    write_config("http://moorage.example:8080", "kept-token")
    assert resolve_target().token == "kept-token"
    assert resolve_target("http://moorage.example:8080/").token == "kept-token"
    with pytest.raises(ApiError) as elsewhere:
        resolve_target("http://evil.example:8080")
    assert elsewhere.value.code == "no_token"
    assert "kept is for http://moorage.example:8080" in elsewhere.value.message
    monkeypatch.setenv("MOORAGE_URL", "http://evil.example:8080")
    with pytest.raises(ApiError):
        resolve_target()
    assert resolve_target(token="named-for-it").token == "named-for-it"


def test_the_admins_token_goes_only_to_the_servers_own_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin-token").write_text("admin-secret\n")
    monkeypatch.setenv("MOORAGE_HOME", str(home))
    assert resolve_target().token == "admin-secret"  # the default address, beside it
    monkeypatch.setenv("MOORAGE_PORT", "9999")
    assert resolve_target().url == "http://127.0.0.1:9999"
    assert resolve_target().token == "admin-secret"
    with pytest.raises(ApiError) as elsewhere:
        resolve_target("http://127.0.0.1:19089")
    assert "sent only to its own address" in elsewhere.value.message
    monkeypatch.setenv("MOORAGE_ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("MOORAGE_URL", "http://evil.example")
    with pytest.raises(ApiError):
        resolve_target()


def test_a_target_never_shows_its_token() -> None:
    target = resolve_target("http://moorage.example:8080", "secret-token")
    assert "secret-token" not in repr(target)
    assert "secret-token" not in str(target)
    assert target.token == "secret-token"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_planted_admin_token_file_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run in a shared folder, moorage must not act as whoever planted .moorage there."""
    home = tmp_path / "shared" / ".moorage"
    home.mkdir(parents=True)
    (home / "admin-token").write_text("their-token\n")
    monkeypatch.setenv("MOORAGE_HOME", str(home))
    os.chown(home / "admin-token", 65534, 65534)
    with pytest.raises(ApiError) as planted:
        resolve_target()
    assert "belongs to another user" in planted.value.message
    os.chown(home / "admin-token", os.getuid(), os.getgid())
    home.chmod(0o777)
    with pytest.raises(ApiError):
        resolve_target()
    home.chmod(0o700)
    assert resolve_target().token == "their-token"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_logout_leaves_another_users_file(clean_env: Path) -> None:
    clean_env.parent.mkdir(mode=0o700)
    clean_env.write_text("theirs")
    os.chown(clean_env, 65534, 65534)
    with pytest.raises(MoorageError, match="belongs to another user"):
        remove_config()
    assert clean_env.read_text() == "theirs"
