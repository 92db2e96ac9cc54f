"""Every spec an endpoint ran is kept, so a failed rollout can go back to the last good one;
and a store created before revisions existed gains them on upgrade."""

from __future__ import annotations

import dataclasses

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from moorage.models.endpoints import DeploySpec, ReadinessProbe, Resources
from moorage.store.db import MIGRATIONS_DIR, Database
from moorage.store.endpoints import EndpointRepository
from tests.integration.test_store_endpoints import _endpoint, _user


def test_revisions_keep_each_spec_with_probe_and_resources(db: Database) -> None:
    first = _endpoint(_user(db, "ada"), "llm")
    second = dataclasses.replace(
        first,
        revision=2,
        deploy=DeploySpec(
            image_url="python:3.11",
            command="python serve.py",
            port=9000,
            readiness_probe=ReadinessProbe(path="/health", period_s=0.5),
            resources=Resources(cpus=2.0, memory_mb=1024),
        ),
    )
    with db.session() as session:
        repository = EndpointRepository(session)
        repository.add(first)
        repository.add_revision(first)
        repository.save(second)
        repository.add_revision(second)

    with db.session() as session:
        repository = EndpointRepository(session)
        assert repository.latest_revision(first.service_id) == 2
        assert repository.revision(first.service_id, 1) == (first.flavor_id, first.deploy)
        assert repository.revision(first.service_id, 2) == (second.flavor_id, second.deploy)
        assert repository.revision(first.service_id, 3) is None
        live = repository.get_live(first.service_id)
    assert live is not None
    assert live.deploy.readiness_probe.path == "/health"
    assert live.deploy.resources == Resources(cpus=2.0, memory_mb=1024)


def test_upgrading_a_first_version_store_records_each_endpoints_revision(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        old = _endpoint("u" * 32, "legacy")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (user_id, name, is_admin, created_at) "
                    "VALUES (:id, 'legacy-user', false, :at)"
                ),
                {"id": "u" * 32, "at": old.created_at.replace(tzinfo=None)},
            )
            connection.execute(
                text(
                    "INSERT INTO endpoints (service_id, user_id, name, description, payment_type,"
                    " flavor_id, scale_type, target_instance_number, deploy, revision,"
                    " desired_state, service_type, created_at, updated_at)"
                    " VALUES (:id, :user, 'legacy', '', 'usd', :flavor, 'manual', 1,"
                    " :deploy, 4, 'running', 'normal', :at, :at)"
                ),
                {
                    "id": old.service_id,
                    "user": "u" * 32,
                    "flavor": old.flavor_id,
                    "deploy": '{"image_url": "python:3.10-slim", "command": "python app.py",'
                    ' "port": 8080, "gpu_num": 0, "env": {}}',
                    "at": old.created_at.replace(tzinfo=None),
                },
            )
        db.migrate()
        with db.session() as session:
            repository = EndpointRepository(session)
            assert repository.latest_revision(old.service_id) == 4
            stored = repository.revision(old.service_id, 4)
            endpoint = repository.get_live(old.service_id)
        assert stored is not None
        assert stored[1].command == "python app.py"
        assert stored[1].readiness_probe == ReadinessProbe()  # defaults for old specs
        assert endpoint is not None
        assert endpoint.rollout_note is None
    finally:
        db.dispose()
