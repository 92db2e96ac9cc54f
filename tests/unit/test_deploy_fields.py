"""``command`` (optional), ``args``, ``volumes`` and ``shm_size_mb`` as the API validates
and stores them, and as the sandbox mounts them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from moorage.models.endpoints import DeploySpec, Volume, deploy_from_json, deploy_to_json
from moorage.models.requests import (
    MAX_ARGS,
    MAX_COMMAND_BYTES,
    MAX_VOLUMES,
    CreateEndpointRequest,
    DeployMetadataPatch,
)
from moorage.runtimes.sandbox import SandboxConfig, bwrap_args, mountable
from tests.unit.test_requests import create_body, messages_of

VOLUME = {"name": "weights", "mount_path": "/data"}


def _deploy(**fields: Any) -> dict[str, Any]:
    return create_body(deploy_metadata={"command": None, **fields})


def test_without_a_command_the_image_runs_with_its_args() -> None:
    spec = CreateEndpointRequest.model_validate(
        _deploy(args=["--model", "x"], volumes=[VOLUME], shm_size_mb=2048)
    ).deploy_metadata.to_spec()

    assert spec.command is None
    assert spec.args == ("--model", "x")
    assert spec.volumes == (Volume("weights", "/data"),)
    assert spec.shm_size_mb == 2048


def test_the_defaults_are_no_args_no_volumes_and_the_runtimes_shm() -> None:
    spec = CreateEndpointRequest.model_validate(create_body()).deploy_metadata.to_spec()

    assert (spec.args, spec.volumes, spec.shm_size_mb) == ((), (), None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"args": ["x"] * (MAX_ARGS + 1)}, "deploy_metadata.args"),
        ({"args": ["x" * (MAX_COMMAND_BYTES // 2 + 1)] * 2}, "deploy_metadata.args"),
        ({"args": ["a\x00b"]}, "control or text-direction characters"),
        ({"shm_size_mb": 0}, "deploy_metadata.shm_size_mb"),
        ({"shm_size_mb": 2 * 1024 * 1024}, "deploy_metadata.shm_size_mb"),
        ({"shm_size_mb": True}, "deploy_metadata.shm_size_mb"),
        ({"volumes": [VOLUME] * (MAX_VOLUMES + 1)}, "deploy_metadata.volumes"),
        ({"volumes": [{"name": "../up", "mount_path": "/data"}]}, "deploy_metadata.volumes"),
        ({"volumes": [{"name": "", "mount_path": "/data"}]}, "deploy_metadata.volumes"),
        ({"volumes": [{"name": "w", "mount_path": "data"}]}, "must be an absolute path"),
        ({"volumes": [{"name": "w", "mount_path": "/data/"}]}, "trailing slash"),
        ({"volumes": [{"name": "w", "mount_path": "/data/../etc"}]}, ". or .."),
        ({"volumes": [{"name": "w", "mount_path": "/"}]}, "must not be / itself"),
        ({"volumes": [{"name": "w", "mount_path": "/proc"}]}, "must not be /proc"),
        ({"volumes": [{"name": "w", "mount_path": "/usr/local/x"}]}, "must not be /usr"),
        ({"volumes": [{"name": "w", "mount_path": "/etc"}]}, "must not be /etc"),
        ({"volumes": [{"name": "w", "mount_path": "/dev/shm"}]}, "must not be /dev"),
        ({"volumes": [VOLUME, {**VOLUME, "mount_path": "/b"}]}, "name 'weights' appears twice"),
        ({"volumes": [VOLUME, {**VOLUME, "name": "b"}]}, "mount_path '/data' appears twice"),
        ({"volumes": [{"name": "w"}]}, "deploy_metadata.volumes.0.mount_path"),
    ],
)
def test_bad_values_are_refused_naming_the_field(fields: dict[str, Any], expected: str) -> None:
    messages = messages_of(_deploy(**fields))

    assert any(expected in message for message in messages), messages


def test_a_put_may_remove_the_command_and_the_shm_size_with_null() -> None:
    current = DeploySpec("img", "serve", 8000, args=(), shm_size_mb=512)
    patch = DeployMetadataPatch.model_validate(
        {"command": None, "shm_size_mb": None, "args": ["--x"]}
    )

    updated = patch.apply_to(current)

    assert (updated.command, updated.shm_size_mb, updated.args) == (None, None, ("--x",))
    untouched = DeployMetadataPatch.model_validate({"port": 9000}).apply_to(current)
    assert (untouched.command, untouched.shm_size_mb) == ("serve", 512)


def test_the_store_keeps_the_new_fields_and_reads_older_specs() -> None:
    spec = DeploySpec(
        "img", None, 8000, args=("a",), volumes=(Volume("w", "/data"),), shm_size_mb=64
    )

    assert deploy_from_json(deploy_to_json(spec)) == spec
    older = {"image_url": "img", "command": "serve", "port": 8000}
    assert deploy_from_json(older) == DeploySpec("img", "serve", 8000)


def test_the_command_quota_counts_args_too() -> None:
    assert DeploySpec("img", "ab", 1, args=("cd", "é")).command_bytes == 2 + 2 + 2


CONFIG = SandboxConfig(
    bwrap="/usr/bin/bwrap",
    home=Path("/srv/moorage"),
    path="/usr/bin:/bin",
    python="/usr/bin/python3",
    hidden_dirs=(Path("/srv/moorage"), Path("/mnt")),
    writable_tmp=(Path("/tmp"), Path("/dev/shm")),
)
WORK = Path("/srv/moorage/replicas/r/work")


def test_volumes_are_bound_writable_after_the_tmpfs_they_sit_in_and_shm_is_sized() -> None:
    args = bwrap_args(
        CONFIG,
        workdir=WORK,
        command="serve",
        env_fd=3,
        workdir_fd=4,
        mounts=[(5, "/mnt/models/weights")],
        shm_size_mb=64,
    )
    sandbox = args[: args.index("--")]

    # By descriptor: no later mount can swap what the source path resolves to.
    bind = sandbox.index("--bind-fd")
    assert sandbox[bind : bind + 3] == ["--bind-fd", "5", "/mnt/models/weights"]
    assert "--bind" not in sandbox
    assert bind > sandbox.index("/mnt"), "the bind must come after /mnt's tmpfs"
    assert sandbox[sandbox.index("/mnt/models") - 1 :][:2] == ["--dir", "/mnt/models"]
    shm = sandbox.index("/dev/shm")
    assert sandbox[shm - 5 : shm + 1] == [
        "--size",
        str(64 * 1024 * 1024),
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
    ]


def test_without_shm_size_the_sandboxs_shm_is_unsized() -> None:
    args = bwrap_args(CONFIG, workdir=WORK, command="serve", env_fd=3, workdir_fd=4)

    assert "--size" not in args


def test_a_volume_goes_where_the_read_only_root_can_hold_a_mount_point() -> None:
    assert mountable(CONFIG, "/mnt/weights")
    assert mountable(CONFIG, "/tmp/cache")
    assert not mountable(CONFIG, "/no-such-folder-on-this-host/weights")


def test_no_volume_goes_where_the_work_folder_is_bound_nor_above_it() -> None:
    assert not mountable(CONFIG, "/srv"), "the work folder's bind would go through it"
    assert not mountable(CONFIG, "/srv/moorage")
    assert not mountable(CONFIG, "/srv/moorage/replicas/r/work/x")


def test_no_volume_covers_what_moorage_shows_the_sandbox_for_itself() -> None:
    shown = dataclasses.replace(CONFIG, exposed=(Path("/root/.pyenv/versions/3.11.7"),))
    for path in ("/root", "/root/.pyenv", "/root/.pyenv/versions/3.11.7/lib"):
        assert not mountable(shown, path), path
    assert mountable(shown, "/mnt/weights")
