"""The sandbox's command line and environment, as pure data: what each replica is given,
what is hidden from it, and what must never be there (a user namespace that would
remap root, a new session that would leave the stop signal's group, die-with-parent,
which would take replicas down with a crashed moorage)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moorage.runtimes.sandbox import (
    DOCUMENTED_VARIABLES,
    GPU_CONTROL_DEVICES,
    Sandbox,
    SandboxConfig,
    bwrap_args,
    replica_env,
)
from moorage.runtimes.sandbox_env import LOADER, args_file, env_payload
from moorage.settings import Settings

HOME = Path("/srv/moorage")
WORK = HOME / "replicas" / ("a" * 32) / "work"


def _config(*, as_root: bool) -> SandboxConfig:
    return SandboxConfig(
        bwrap="/usr/bin/bwrap",
        home=HOME,
        path="/usr/bin:/bin",
        python="/opt/moorage/bin/python",
        setpriv="/usr/bin/setpriv" if as_root else None,
        uid=65534 if as_root else None,
        hidden_dirs=(HOME, Path("/root"), Path("/run")),
        hidden_files=(Path("/etc/moorage.toml"),),
        exposed=(Path("/root/.pyenv/versions/3.11.7"),),
        writable_tmp=(Path("/tmp"), Path("/dev/shm")),
    )


ENV_FD = 7
WORK_FD = 8


def _args(config: SandboxConfig) -> list[str]:
    return bwrap_args(
        config, workdir=WORK, command="python3 app.py", env_fd=ENV_FD, workdir_fd=WORK_FD
    )


def _pairs(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == option]


def _sandbox_part(args: list[str]) -> list[str]:
    return args[: args.index("--")]


@pytest.mark.parametrize("as_root", [True, False])
def test_never_a_new_session_nor_death_with_moorage(as_root: bool) -> None:
    options = _sandbox_part(_args(_config(as_root=as_root)))
    assert "--new-session" not in options, "a new session leaves the group stop() signals"
    assert "--die-with-parent" not in options, "replicas must outlive a crashed moorage"
    assert "--share-net" not in options


def test_as_root_the_replica_drops_to_the_sandbox_uid_and_no_user_namespace_remaps_it() -> None:
    args = _args(_config(as_root=True))
    options = _sandbox_part(args)
    assert "--unshare-user" not in options
    assert "--unshare-all" not in options
    assert "--uid" not in options
    for namespace in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert namespace in options
    command = args[args.index("--") + 1 :]
    assert command[:6] == [
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]
    assert command[6:10] == ["/opt/moorage/bin/python", "-I", "-S", "-c"]
    assert _pairs(options, "--cap-add") == ["CAP_SETUID", "CAP_SETGID"]


def test_unprivileged_the_sandbox_is_a_user_namespace_that_cannot_nest() -> None:
    args = _args(_config(as_root=False))
    options = _sandbox_part(args)
    assert options[1:4] == ["--unshare-all", "--unshare-user", "--disable-userns"]
    assert "setpriv" not in " ".join(args[args.index("--") :])
    assert "--cap-add" not in options


def test_moorages_files_are_hidden_and_only_the_work_folder_is_writable() -> None:
    options = _sandbox_part(_args(_config(as_root=True)))
    assert options[options.index("--ro-bind") : options.index("--ro-bind") + 3] == [
        "--ro-bind",
        "/",
        "/",
    ]
    tmpfs = _pairs(options, "--tmpfs")
    assert {str(HOME), "/root", "/run", "/tmp", "/dev/shm"} <= set(tmpfs)
    assert "--bind" not in options
    bind = options.index("--bind-fd")
    # One writable place, by descriptor: the work folder.
    assert options[bind : bind + 3] == ["--bind-fd", str(WORK_FD), str(WORK)]
    assert options.count("--bind-fd") == 1
    # The work folder is bound after the tmpfs that hides MOORAGE_HOME, or it is hidden.
    assert options.index(str(WORK)) > options.index(str(HOME))
    assert "/etc/moorage.toml" in options[options.index("/dev/null") + 1 :]
    assert "--proc" in options
    assert "--dev" in options


def test_folders_leading_to_a_bind_inside_a_tmpfs_are_made_reachable() -> None:
    options = _sandbox_part(_args(_config(as_root=True)))
    dirs = _pairs(options, "--dir")
    assert dirs[: dirs.index(str(HOME / "replicas"))] == ["/root/.pyenv", "/root/.pyenv/versions"]
    assert str(HOME / "replicas" / ("a" * 32)) in dirs
    for made in dirs:
        at = options.index(made)
        assert options[at - 3 : at] == ["--perms", "0755", "--dir"]


@pytest.mark.parametrize("as_root", [True, False])
def test_the_environment_reaches_only_the_replica_after_the_drop_never_a_command_line(
    as_root: bool,
) -> None:
    args = _args(_config(as_root=as_root))
    options = _sandbox_part(args)
    assert "--setenv" not in options, "every local user reads a command line"
    assert "--args" not in options, "bwrap (root) must not run with the replica's variables"
    assert options[-1] == "--clearenv"
    command = args[args.index("--") + 1 :]
    if as_root:  # setpriv drops to the owner's uid first, with no variable set
        command = command[command.index("--") + 1 :]
    assert command[:6] == ["/opt/moorage/bin/python", "-I", "-S", "-c", LOADER, str(ENV_FD)]


def test_the_descriptor_holds_exactly_the_replicas_variables() -> None:
    env = {"PORT": "8000", "MODEL": "tiny 'quoted' $HOME", "EMPTY": "", "NAME": "caf\u00e9"}
    with args_file(env_payload(env)) as fd:
        data = os.read(fd, 1 << 20)
    parts = data.split(b"\0")
    assert parts[-1] == b"", "every variable is NUL-terminated, the last one too"
    pairs = [part.decode().split("=", 1) for part in parts[:-1]]
    assert dict((name, value) for name, value in pairs) == env


def test_the_loader_sets_exactly_those_variables_and_runs_the_script(tmp_path: Path) -> None:
    env = {"PORT": "8000", "TRICKY": "a=b\nc", "EMPTY": ""}
    out = tmp_path / "env"
    with args_file(env_payload(env)) as fd:
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", LOADER, str(fd), f"env > {out}", "replica"],
            pass_fds=(fd,),
            env={"OUTER": "not for the replica"},
            check=True,
            timeout=30,
        )
    seen = out.read_text()
    assert "OUTER" not in seen
    assert "PORT=8000" in seen.splitlines()
    assert "TRICKY=a=b" in seen.splitlines()


def test_a_nul_in_a_value_is_refused_rather_than_split() -> None:
    with pytest.raises(ValueError, match="null byte in variable 'BAD'"):
        env_payload({"BAD": "x\0LD_PRELOAD=/x.so"})


def test_replica_env_is_the_documented_set_plus_the_endpoints_env() -> None:
    env = replica_env(
        {"MODEL": "tiny", "PORT": "1", "MOORAGE_REPLICA_ID": "forged", "PATH": "/opt/bin"},
        port=4321,
        replica_id="r" * 32,
        endpoint_id="e" * 32,
        workdir=WORK,
        path="/usr/bin:/bin",
    )
    assert set(env) == set(DOCUMENTED_VARIABLES) | {"MODEL"}
    assert env["PORT"] == "4321", "the runtime's port wins"
    assert env["MOORAGE_REPLICA_ID"] == "r" * 32, "an endpoint cannot forge its identity"
    assert env["PATH"] == "/opt/bin", "an endpoint may set its own PATH"
    assert env["HOME"] == str(WORK)


def test_a_missing_bwrap_makes_normal_users_replicas_refused_with_how_to_fix(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox.from_settings(
        Settings(home=tmp_path, bwrap_path=str(tmp_path / "no-such-bwrap"))
    )
    assert sandbox.config is None
    refusal = sandbox.refusal
    assert refusal is not None
    assert "no-such-bwrap" in refusal
    assert "apt-get install bubblewrap" in refusal
    assert "MOORAGE_RUNTIME=docker" in refusal
    assert "refused" in sandbox.describe()


def test_turned_off_nothing_is_refused_and_start_up_says_it_is_unsafe(tmp_path: Path) -> None:
    sandbox = Sandbox.from_settings(Settings(home=tmp_path, sandbox="off"))
    assert sandbox.refusal is None
    assert "OFF" in sandbox.describe()


def test_a_replica_given_gpus_gets_their_device_files_and_the_drivers_alone() -> None:
    config = _config(as_root=True)
    args = bwrap_args(
        config,
        workdir=WORK,
        command="serve",
        env_fd=ENV_FD,
        workdir_fd=WORK_FD,
        gpu_devices=[Path("/dev/nvidia3")],
    )
    options = _sandbox_part(args)
    assert _pairs(options, "--dev-bind") == ["/dev/nvidia3"]
    assert options[options.index("--dev-bind") + 2] == "/dev/nvidia3"
    assert _pairs(options, "--dev-bind-try") == list(GPU_CONTROL_DEVICES)
    # After the sandbox's own /dev, or that would cover them.
    assert options.index("--dev-bind") > options.index("--dev")

    without = _sandbox_part(_args(config))
    assert "--dev-bind" not in without
    assert "--dev-bind-try" not in without
