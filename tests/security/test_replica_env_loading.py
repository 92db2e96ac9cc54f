"""A replica's environment never reaches a process with more rights than the replica.

The attack: alice puts a shared library in her volume and names it in her endpoint's
``env`` as ``LD_PRELOAD`` (or in a secret of that name). If the sandbox set her
variables before it dropped to her uid, the library's constructor would run in
``setpriv``, as root with every capability, and own the host. Here the library
only writes down the uid of every process that loads it, in her volume; no line
may say uid 0. (Compiled with the host's C compiler.)
"""

from __future__ import annotations

import base64
import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.components import need
from tests.support.server import ApiClient, MoorageServer, wait_for

STORES = ["sqlite"]
LIBRARY = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void note_who_loaded_me(void) {
    const char *diary = getenv("UID_DIARY");
    if (diary == NULL) return;
    FILE *out = fopen(diary, "a");
    if (out == NULL) return;
    fprintf(out, "uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    fclose(out);
}
"""


def _library(tmp_path: Path) -> bytes:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        need("a C compiler", "no cc or gcc to build the preloaded library")
    assert compiler is not None
    source = tmp_path / "diary.c"
    source.write_text(LIBRARY)
    built = tmp_path / "diary.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-s", "-Os", "-o", str(built), str(source)],
        check=True,
        timeout=120,
    )
    # Small enough for a command (mostly padding, which compresses).
    return gzip.compress(built.read_bytes(), 9)


def test_ld_preload_in_env_runs_only_as_the_replicas_uid(
    server: MoorageServer, alice: ApiClient, tmp_path: Path
) -> None:
    if server.runtime != "process":
        pytest.skip("the process runtime's sandbox")
    encoded = base64.b64encode(_library(tmp_path)).decode()
    # The first start puts the library in the volume, then each serves.
    command = (
        # (never over a copy a running process has loaded)
        "[ -e /mnt/lib/diary.so ] || "
        f"{{ echo {encoded} | base64 -d | gzip -d > /mnt/lib/diary.so; }} && "
        "exec python3 -m http.server --bind 0.0.0.0 $PORT"
    )
    created = alice.create(
        name="preload",
        deploy_metadata={
            "command": command,
            "volumes": [{"name": "lib", "mount_path": "/mnt/lib"}],
        },
    )
    service_id = created["service_id"]
    try:
        alice.wait_status(service_id, "available", timeout=120)
        changed = alice.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={
                "deploy_metadata": {
                    "env": {"LD_PRELOAD": "/mnt/lib/diary.so", "UID_DIARY": "/mnt/lib/uids"}
                }
            },
        )
        assert changed.status_code == 200, changed.text
        diary = server.home / "volumes" / created["user_id"] / "lib" / "uids"

        # The revision-2 replica's shell and bridge load it (the first start's did not);
        # a line of root's comes first if anything before the drop loaded it.
        def noted() -> list[str]:
            lines = diary.read_text().splitlines() if diary.exists() else []
            return lines if len(lines) >= 2 or any("uid=0 " in line for line in lines) else []

        lines = wait_for(noted, timeout=120, what="the preloaded library to note who loaded it")
        as_root = [line for line in lines if "uid=0 " in line or line.endswith("euid=0")]
        assert not as_root, f"the replica's LD_PRELOAD ran as root: {lines}"
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")
