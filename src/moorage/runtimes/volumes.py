"""Named volumes: where each runtime keeps a user's volume.

A volume belongs to the endpoint's user, never to an endpoint or a replica: every
endpoint of that user naming it mounts the same data, another user's volume of the
same name is another volume, and it outlives replicas and endpoints (model weights
downloaded once stay). moorage never removes one; docs/runtimes.md says how an
operator does.

- docker: an engine volume ``moorage-<user_id>-<name>``, labelled with the user and
  the installation, created on first use.
- process: a directory ``$MOORAGE_HOME/volumes/<user_id>/<name>``, 0700 and owned by
  the uid sandboxed replicas run as, bind-mounted at the volume's path in the sandbox.
"""

from __future__ import annotations

from pathlib import Path

from moorage.models.endpoints import Volume
from moorage.runtimes.private_dirs import owned_dir

ENGINE_PREFIX = "moorage"
LABEL_USER = "io.moorage.user"
LABEL_VOLUME = "io.moorage.volume"


def engine_name(user_id: str, volume: Volume) -> str:
    """The container engine's name for a user's volume."""
    return f"{ENGINE_PREFIX}-{user_id}-{volume.name}"


def host_dir(root: Path, user_id: str, volume: Volume) -> Path:
    """Where the process runtime keeps a user's volume."""
    return root / user_id / volume.name


def prepare_host_dir(root: Path, user_id: str, volume: Volume, *, uid: int | None) -> Path:
    """The user's volume directory, created on first use: 0700, owned by ``uid`` (the
    sandbox's, when moorage runs as root) so the replica can write it and nobody else
    on the host can read it. The folders above it stay moorage's own (0700)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / user_id).mkdir(mode=0o700, exist_ok=True)
    return owned_dir(host_dir(root, user_id, volume), uid=uid)
