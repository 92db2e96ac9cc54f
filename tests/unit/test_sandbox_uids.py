"""Which uid each owner of sandboxed replicas runs as, and how their folders are handed
to it: the pure decisions, the settings that bound the range, the start-up refusal of
a range the host uses, and the handover of an older moorage's folders (as root)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from pydantic import ValidationError

from moorage.composition import check_owner_uids
from moorage.errors import MoorageError
from moorage.models.sandbox_uids import (
    UidRange,
    clash_message,
    exhausted_message,
    host_clashes,
    next_free_uid,
)
from moorage.runtimes.private_dirs import owned_dir
from moorage.settings import MAX_UID, Settings

RANGE = UidRange(2_000_000_000, 4)


def test_the_first_owner_gets_the_first_uid_and_later_ones_the_lowest_free() -> None:
    assert next_free_uid(RANGE, []) == 2_000_000_000
    assert next_free_uid(RANGE, [2_000_000_000]) == 2_000_000_001
    assert next_free_uid(RANGE, [2_000_000_001, 2_000_000_000]) == 2_000_000_002
    assert next_free_uid(RANGE, [2_000_000_000, 2_000_000_002]) == 2_000_000_001


def test_uids_given_under_an_earlier_range_take_none_of_this_ones_room() -> None:
    assert next_free_uid(RANGE, [65534, 1_000, 3_000_000_000]) == 2_000_000_000


def test_a_full_range_gives_none_and_the_message_says_what_the_operator_can_do() -> None:
    assert next_free_uid(RANGE, range(2_000_000_000, 2_000_000_004)) is None
    message = exhausted_message(RANGE)
    assert "2000000000-2000000003" in message
    assert "MOORAGE_SANDBOX_UID_COUNT" in message
    assert "restart moorage" in message


@pytest.mark.parametrize(("base", "count"), [(0, 1), (1, 0), (MAX_UID, 2)])
def test_a_range_outside_the_uids_a_process_can_have_is_refused(base: int, count: int) -> None:
    with pytest.raises(ValueError, match="must lie within"):
        UidRange(base, count)


def test_the_settings_default_to_a_range_far_above_the_hosts_accounts() -> None:
    settings = Settings()
    assert UidRange.from_settings(settings) == UidRange(2_000_000_000, 65536)
    assert not hasattr(settings, "sandbox_uid"), "the one shared uid is gone"


def test_settings_that_run_past_the_largest_uid_are_refused_naming_both() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(sandbox_uid_base=MAX_UID - 9, sandbox_uid_count=11)
    error = caught.value.errors()[0]
    assert error["loc"] == ("sandbox_uid_count",)
    assert "MOORAGE_SANDBOX_UID_BASE" in error["msg"]
    assert str(MAX_UID) in error["msg"]
    Settings(sandbox_uid_base=MAX_UID - 9, sandbox_uid_count=10)  # the last uid fits
    with pytest.raises(ValidationError):
        Settings(sandbox_uid_base=0)


def test_host_users_and_groups_inside_the_range_are_named_and_others_not() -> None:
    host = [
        ("user nobody (uid 65534)", 65534),
        ("user x (uid 2000000001)", 2_000_000_001),
        ("group y (gid 2000000003)", 2_000_000_003),
        ("group z (gid 2000000004)", 2_000_000_004),
    ]
    found = host_clashes(RANGE, host)
    assert found == ["group y (gid 2000000003)", "user x (uid 2000000001)"]
    message = clash_message(RANGE, found)
    assert "MOORAGE_SANDBOX_UID_BASE" in message
    assert "/etc/passwd" in message
    assert "/etc/group" in message
    assert "user x (uid 2000000001)" in message


def test_a_long_list_of_clashes_is_cut_short() -> None:
    many = [f"user u{n} (uid {n})" for n in range(20)]
    assert "and 15 more" in clash_message(UidRange(1, 100), many)


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("handing folders to another uid needs root (CI runs as root)")


def test_an_older_moorages_folder_is_handed_over_whole_without_following_links(
    tmp_path: Path,
) -> None:
    _needs_root()
    outside = tmp_path / "outside"
    outside.write_text("the host's")
    folder = tmp_path / "volume"
    (folder / "hub" / "models").mkdir(parents=True)
    (folder / "hub" / "models" / "weights.bin").write_text("w")
    (folder / "link-to-file").symlink_to(outside)
    (folder / "link-to-dir").symlink_to(tmp_path)
    for path in [folder, *folder.rglob("*")]:
        os.lchown(path, 65534, 65534)

    owned_dir(folder, uid=2_000_000_001)

    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (2_000_000_001, 2_000_000_001), path
    assert (outside.stat().st_uid, tmp_path.stat().st_uid) == (0, 0), "a link was followed"


def test_a_new_folder_is_made_0700_and_owned_by_the_uid(tmp_path: Path) -> None:
    _needs_root()
    folder = owned_dir(tmp_path / "cache", uid=2_000_000_002)
    info = folder.stat()
    assert (info.st_uid, info.st_gid) == (2_000_000_002, 2_000_000_002)
    assert info.st_mode & 0o777 == 0o700


def test_a_symlink_in_the_folders_place_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "volume").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="not a directory"):
        owned_dir(tmp_path / "volume", uid=2_000_000_001)


def test_start_up_refuses_a_range_that_holds_a_host_account_naming_it() -> None:
    account = next(user for user in pwd.getpwall() if user.pw_uid > 0)
    settings = Settings(sandbox_uid_base=account.pw_uid, sandbox_uid_count=1)
    with pytest.raises(MoorageError) as caught:
        check_owner_uids(settings)
    assert f"user {account.pw_name} (uid {account.pw_uid})" in caught.value.message
    assert "MOORAGE_SANDBOX_UID_BASE" in caught.value.message


def test_start_up_accepts_the_default_range_on_this_host() -> None:
    check_owner_uids(Settings())
