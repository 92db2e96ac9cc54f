"""What a replica's sandbox is made of, resolved once at start from the settings and
the host's layout into a ``SandboxConfig``: plain data that ``sandbox.bwrap_args``
turns into a command line, so what a replica sees can be checked without running it.

Hidden (each an empty tmpfs, or ``/dev/null`` for a file): moorage's own files
(``MOORAGE_HOME``, its user's home, a SQLite store or config file kept elsewhere)
and where people and services keep theirs (``HOST_PRIVATE_DIRS``). Shown read-only
even inside those: ``MOORAGE_SANDBOX_EXPOSE`` and moorage's own interpreter, which
the bridge runs on.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from moorage.settings import Settings

# Where people and services keep their files, hidden from every sandboxed replica by an
# empty tmpfs (docs/runtimes.md lists them): users' homes, daemons' sockets and runtime
# files, served and mounted data, services' state, mail, logs, caches and backups. What
# a replica needs (/usr, /etc, /opt, /lib) stays readable.
HOST_PRIVATE_DIRS = (
    "/home",
    "/root",
    "/run",
    "/srv",
    "/mnt",
    "/media",
    "/var/lib",
    "/var/spool",
    "/var/mail",
    "/var/log",
    "/var/cache",
    "/var/backups",
    "/var/www",
    "/var/opt",
)


class SandboxUnavailable(Exception):
    """The sandbox cannot run here; the message says why."""


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox's command line is built from (pure data, for tests)."""

    bwrap: str
    home: Path
    path: str
    python: str
    setpriv: str | None = None  # set when moorage runs as root
    # As root: the uid (and gid) one replica drops to, its owner's (``sandbox_uids``),
    # set per replica; None in the config built at start, and when not root.
    uid: int | None = None
    hidden_dirs: tuple[Path, ...] = ()
    hidden_files: tuple[Path, ...] = ()
    exposed: tuple[Path, ...] = ()
    writable_tmp: tuple[Path, ...] = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))

    @property
    def as_root(self) -> bool:
        return self.setpriv is not None


def _resolve_binary(name: str, setting: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SandboxUnavailable(
            f"{setting} is {name!r}, which is not an executable: install {package} "
            f"(apt-get install {package}) or set {setting} to where it is"
        )
    return found


def _user_home() -> Path | None:
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None
    return home if home.is_dir() and home != Path("/") else None


def _private_dirs() -> set[Path]:
    """The folders of ``HOST_PRIVATE_DIRS`` this host has, as they resolve (``/var/mail``
    may be a link to ``/var/spool/mail``); never ``/`` itself."""
    found: set[Path] = set()
    for name in HOST_PRIVATE_DIRS:
        path = Path(name).resolve()
        if path.is_dir() and path != Path("/"):
            found.add(path)
    return found


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    name = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(name).resolve() if name and name != ":memory:" else None


def build_config(settings: Settings) -> SandboxConfig:
    """The sandbox for these settings; raises SandboxUnavailable with what is missing."""
    bwrap_path = _resolve_binary(settings.bwrap_path, "MOORAGE_BWRAP_PATH", "bubblewrap")
    as_root = os.getuid() == 0
    setpriv = (
        _resolve_binary(settings.setpriv_path, "MOORAGE_SETPRIV_PATH", "util-linux")
        if as_root
        else None
    )
    home = settings.home.resolve()
    hidden = {home}
    user_home = _user_home()
    if user_home is not None:
        hidden.add(user_home.resolve())
    hidden_files: set[Path] = set()
    database = _sqlite_file(settings.resolved_database_url)
    if database is not None and not database.is_relative_to(home):
        if database.parent == Path("/"):
            hidden_files.add(database)
        else:
            hidden.add(database.parent)
    config_file = os.environ.get("MOORAGE_CONFIG")
    if config_file and Path(config_file).is_file():
        hidden_files.add(Path(config_file).resolve())
    hidden.update(_private_dirs())
    if settings.ray_address:
        # On a Ray node: every replica's folder there (a replica sees its own, bound in).
        hidden.add(settings.ray_replicas_root)
    exposed: list[Path] = []
    wanted = [Path(p) for p in settings.sandbox_expose.split(":") if p]
    # The bridge runs on moorage's own interpreter: show its installation read-only.
    wanted += [Path(sys.prefix), Path(sys.base_prefix)]
    for path in wanted:
        resolved = path.resolve()
        if home.is_relative_to(resolved) or resolved.is_relative_to(home):
            raise SandboxUnavailable(
                f"{resolved} cannot be shown to replicas: it holds or is inside "
                "MOORAGE_HOME; install moorage outside it, or change MOORAGE_SANDBOX_EXPOSE"
            )
        if resolved.is_dir() and resolved not in exposed:
            exposed.append(resolved)
    return SandboxConfig(
        bwrap=bwrap_path,
        home=home,
        path=settings.sandbox_path,
        python=sys.executable,
        setpriv=setpriv,
        hidden_dirs=tuple(sorted(hidden)),
        hidden_files=tuple(sorted(hidden_files)),
        exposed=tuple(exposed),
        writable_tmp=tuple(t for t in SandboxConfig.writable_tmp if t.is_dir()),
    )
