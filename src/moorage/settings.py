"""Configuration: ``MOORAGE_*`` environment variables, then an optional TOML file.

The TOML file is ``$MOORAGE_CONFIG`` (keys are the field names below, without
the prefix); environment variables win over it, and command-line flags win over
both because the CLI passes them as init arguments.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from moorage.logformat import LogFormat

RuntimeName = Literal["auto", "process", "docker", "ray", "fake"]
# The largest uid a process can have: (uid_t)-1 means "no change" to setresuid(2).
MAX_UID = 2**32 - 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOORAGE_", extra="ignore")

    home: Path = Field(default=Path(".moorage"), description="Where moorage keeps its data.")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite in MOORAGE_HOME when unset."
    )
    admin_token: SecretStr | None = None
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) encrypting users' secrets, comma-separated, newest "
        "first; $MOORAGE_HOME/secrets.key (made at first start) when unset.",
    )
    log_format: LogFormat = Field(
        default="text",
        description="text: one line per record for people; json: one JSON object per line.",
    )
    model_cache: Path | None = Field(
        default=None,
        description="Host folder of the model cache, a subfolder per user mounted in "
        "that user's replicas; $MOORAGE_HOME/model-cache when unset.",
    )
    flavors: Path | None = Field(
        default=None, description="Flavor file; $MOORAGE_HOME/flavors.toml when unset."
    )
    gpu_metrics_interval_s: float = Field(
        default=5.0, ge=1, le=300, description="How often GPU use is read for /metrics."
    )
    runtime: RuntimeName = Field(
        default="auto",
        description="auto: docker where an engine answers, else process. ray: replicas on "
        "the Ray cluster at ray_address. fake: replicas in memory, all answered by one tiny "
        "app (benchmarks of the control plane).",
    )
    # The ``ray`` runtime (docs/deploy.md, "Replicas on a Ray cluster").
    ray_address: str | None = Field(
        default=None,
        max_length=255,
        description="The Ray cluster's GCS address, HOST:PORT; setting it selects the ray "
        "runtime unless MOORAGE_RUNTIME names another.",
    )
    ray_node_ip: str | None = Field(
        default=None,
        max_length=64,
        description="This host's address in the Ray cluster, when Ray cannot tell it (a "
        "node started with --node-ip-address): moorage connects through that node.",
    )
    ray_namespace: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The Ray namespace of this installation's replica actors; derived from "
        "the database URL when unset, so installations sharing a cluster never meet.",
    )
    ray_replicas_dir: Path | None = Field(
        default=None,
        description="Where each Ray node keeps its replicas' folders and logs (absolute, "
        "created 0700 on every node); $MOORAGE_HOME/ray-replicas when unset.",
    )
    fake_start_delay_s: float = Field(
        default=0.0, ge=0, description="The fake runtime: how long each start takes."
    )
    docker_host: str = Field(
        default_factory=lambda: os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        description="The Docker Engine API to use: Docker's socket, or Podman's.",
    )
    public_url: str | None = Field(
        default=None, description="Base URL users reach moorage at, for endpoint URLs."
    )
    reconcile_interval_s: float = Field(default=1.0, gt=0)
    metering_interval_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="How often replicas' usage is closed into usage records (and at stop).",
    )
    budget_interval_s: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description="How often each user's spend is checked against their spending limits; "
        "endpoints past one are stopped.",
    )
    autoscale_interval_s: float = Field(
        default=0.5,
        ge=0.05,
        le=60,
        description="How often automatic endpoints' demand is sampled and their count "
        "decided (a request held at zero replicas asks at once).",
    )
    leader_lease_s: float = Field(
        default=3.0,
        ge=1,
        le=60,
        description="How long a leading `moorage controller`'s lease lasts without a "
        "renewal: a standby takes over this long after the leader dies.",
    )
    leader_renew_s: float = Field(
        default=1.0,
        gt=0,
        le=30,
        description="How often the leader renews its lease and standbys look at it (at "
        "most half the lease).",
    )
    controller_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="This controller's name in the lease and its log lines (default: HOST-PID).",
    )
    ready_timeout_s: float = Field(default=900.0, gt=0)
    stop_grace_s: float = Field(default=10.0, ge=0)
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="How long a replica being replaced may finish requests."
    )
    max_instances: int = Field(default=64, ge=1)
    crash_loop_threshold: int = Field(default=3, ge=1)
    # Wire limits of the gateway in front of everything (docs/gateway.md, "Limits").
    gateway_max_url_bytes: int = Field(default=16 * 1024, ge=256, description="414 past it.")
    gateway_max_header_bytes: int = Field(
        default=16 * 1024, ge=256, description="One header line (name and value); 431 past it."
    )
    gateway_max_head_bytes: int = Field(
        default=64 * 1024, ge=1024, description="The request line and headers; 431 past it."
    )
    gateway_max_body_bytes: int = Field(
        default=100 * 1024 * 1024, ge=0, description="Inference request bodies; 413 past it."
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="API request bodies; 413 past it."
    )
    gateway_retry_buffer_bytes: int = Field(
        default=1024 * 1024, ge=0, description="Body copy kept for a replay; no replay past it."
    )
    gateway_header_timeout_s: float = Field(
        default=10.0, gt=0, description="A request head must arrive within this (408)."
    )
    gateway_body_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest pause inside a request body (408)."
    )
    api_body_timeout_s: float = Field(
        default=10.0, gt=0, description="An API request body must arrive whole within this (408)."
    )
    gateway_max_connections: int = Field(
        default=0,
        ge=0,
        description="Open client connections; 0 derives it from the open-file limit.",
    )
    gateway_max_connections_per_client: int = Field(
        default=0,
        ge=0,
        description="Open connections from one address; 0 is a quarter of the total.",
    )
    # The process runtime's sandbox for normal users' replicas (docs/runtimes.md, "process").
    sandbox: Literal["on", "off"] = Field(
        default="on",
        description="off runs normal users' replicas unsandboxed: unsafe, single-tenant only.",
    )
    # As root, each owner of sandboxed replicas runs as a uid (and gid) of this range of
    # their own (models/sandbox_uids.py); the host must use none of it.
    sandbox_uid_base: int = Field(
        default=2_000_000_000, ge=1, le=MAX_UID, description="First uid of the owners' range."
    )
    sandbox_uid_count: int = Field(
        default=65536, ge=1, le=MAX_UID, description="uids in the range: one per replica owner."
    )
    bwrap_path: str = Field(default="bwrap", description="The bubblewrap binary.")
    setpriv_path: str = Field(default="setpriv", description="util-linux setpriv (as root).")
    sandbox_path: str = Field(
        default="/usr/local/bin:/usr/bin:/bin", description="PATH of sandboxed replicas."
    )
    sandbox_expose: str = Field(
        default="", description="Host directories (':'-separated) shown read-only in sandboxes."
    )
    # Per-user quotas: the defaults every user gets until the admin sets their own
    # (PUT /v1/users/{user_id}/quota). The admin is not bound by them.
    quota_endpoints: int = Field(default=20, ge=0, description="Endpoints (not deleted).")
    quota_replicas: int = Field(default=16, ge=0, description="Replicas of running endpoints.")
    quota_flavor_share: float = Field(
        default=0.5, ge=0, le=1, description="Share of a flavor's capacity (at least 1 replica)."
    )
    quota_command_bytes: int = Field(default=16 * 1024, ge=1, le=64 * 1024)
    quota_env_vars: int = Field(default=64, ge=0, le=256)
    quota_env_bytes: int = Field(default=32 * 1024, ge=0, le=64 * 1024)
    quota_name_chars: int = Field(default=100, ge=1, le=128)
    quota_description_chars: int = Field(default=1024, ge=0, le=2048)
    quota_log_followers: int = Field(default=4, ge=0, description="Concurrent log followers.")
    quota_secrets: int = Field(default=32, ge=0, le=1000, description="Secrets one user stores.")
    # Replica logs (docs/runtimes.md, "Logs").
    log_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=4096, description="A log's size before it is rotated."
    )
    log_check_interval_s: float = Field(
        default=1.0, gt=0, description="How often process-runtime logs are checked for size."
    )
    log_retention_s: float = Field(
        default=86400.0, ge=0, description="How long a stopped replica's folder is kept."
    )
    log_response_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=4096, description="Backlog bytes one logs request returns."
    )
    replica_file_max_bytes: int = Field(
        default=4 * 1024**3,
        ge=0,
        description="RLIMIT_FSIZE of process-runtime replicas (any file they write); 0: none.",
    )

    @field_validator("sandbox_uid_count")
    @classmethod
    def _range_fits(cls, count: int, info: ValidationInfo) -> int:
        base = info.data.get("sandbox_uid_base")
        if base is not None and base + count - 1 > MAX_UID:
            raise ValueError(
                f"MOORAGE_SANDBOX_UID_BASE {base} plus MOORAGE_SANDBOX_UID_COUNT {count} "
                f"runs past the largest uid, {MAX_UID}; lower either"
            )
        return count

    @field_validator("leader_renew_s")
    @classmethod
    def _renewed_twice(cls, renew_s: float, info: ValidationInfo) -> float:
        lease_s = info.data.get("leader_lease_s")
        if lease_s is not None and renew_s > lease_s / 2:
            raise ValueError(
                f"MOORAGE_LEADER_RENEW_S {renew_s:g} is more than half of "
                f"MOORAGE_LEADER_LEASE_S {lease_s:g}: a leader needs two tries per lease"
            )
        return renew_s

    @field_validator("home", "model_cache", "flavors")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        """Folders and files as absolute paths, fixed when moorage starts: the sandbox
        binds a replica's folders by path inside a root where a relative one means
        nothing, and a later change of directory must not move them."""
        return None if path is None else path.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("MOORAGE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'moorage.db').resolve()}"

    @property
    def flavors_file(self) -> Path:
        return self.flavors if self.flavors is not None else self.home / "flavors.toml"

    @property
    def resolved_public_url(self) -> str:
        """Base of endpoint URLs: MOORAGE_PUBLIC_URL, else the listen address (a wildcard
        host is replaced by this machine's name). Never taken from a request."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = socket.gethostname() if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def admin_token_file(self) -> Path:
        return self.home / "admin-token"

    @property
    def api_socket(self) -> Path:
        """The API's private Unix socket, behind the gateway (in a 0700 directory)."""
        return self.home / "run" / "api.sock"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache if self.model_cache is not None else self.home / "model-cache"

    @property
    def replicas_dir(self) -> Path:
        return self.home / "replicas"

    @property
    def resolved_runtime(self) -> RuntimeName:
        """The runtime asked for: ``ray`` when a Ray address is set and none is named."""
        if self.runtime == "auto" and self.ray_address:
            return "ray"
        return self.runtime

    @property
    def ray_replicas_root(self) -> Path:
        chosen = self.ray_replicas_dir or self.home / "ray-replicas"
        return chosen.resolve()
