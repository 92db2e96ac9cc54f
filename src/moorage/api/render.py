"""Service results to the reference API's JSON shapes (``api/schemas.py``), field for field."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from moorage.api import schemas
from moorage.models.accounts import ApiToken, User
from moorage.models.autoscaling import ScalePolicy
from moorage.models.billing import COST_QUANTUM
from moorage.models.budgets import BudgetState
from moorage.models.flavors import Flavor
from moorage.models.replicas import shown_address
from moorage.models.states import DesiredState, ReplicaState
from moorage.services.endpoint_billing import EndpointBilling, instance_price_per_hour
from moorage.services.endpoints import EndpointPage, EndpointView
from moorage.services.flavors import FlavorAvailability
from moorage.wire import format_timestamp

GATEWAY_PATH = "/inference-api/v1/inference_service/"


def _meta_info(f: Flavor) -> dict[str, str]:
    """The flavor's ``meta_info``; a GPU flavor's (one with a GPU inventory, discovered
    or declared) also holds its GPUs' memory as ``vram`` (``80GB``, what an endpoint's
    ``resource_metadata.VRAM`` shows), since the reference's flavor object has no field
    of its own for it. Other flavors keep the operator's ``meta_info`` as written, and
    the operator's own ``meta_info.vram`` wins."""
    meta_info = dict(f.meta_info)
    if f.gpus and f.vram is not None:
        meta_info.setdefault("vram", f.vram)
    return meta_info


def flavor(item: FlavorAvailability) -> schemas.Flavor:
    f = item.stored.flavor
    return schemas.Flavor(
        flavor_id=f.flavor_id,
        display_name=f.display_name,
        cluster_id=f.cluster_id,
        cluster_flavor_id=f.cluster_flavor_id,
        meta_info=_meta_info(f),
        billing=schemas.Billing.model_validate(f.billing()),
        created_at=format_timestamp(item.stored.created_at),
        updated_at=format_timestamp(item.stored.updated_at),
        deleted_at=format_timestamp(item.stored.deleted_at),
        is_deleted=item.stored.deleted_at is not None,
        available_num=item.available_num,
        node_max_gpu=f.node_max_gpu,
    )


def flavor_list(items: list[FlavorAvailability]) -> schemas.FlavorList:
    return schemas.FlavorList(flavor_list=[flavor(f) for f in items])


def _money(amount: Decimal) -> float:
    """An amount as a JSON number: six decimals at most, as the reference's prices."""
    return float(amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP))


def billing_metadata(
    view: EndpointView, billing: EndpointBilling | None
) -> schemas.BillingMetadata:
    e = view.endpoint
    price = instance_price_per_hour(view.flavor.flavor if view.flavor else None, e)
    billing = billing or EndpointBilling()
    budget = billing.budget
    return schemas.BillingMetadata(
        payment_type=e.payment_type,
        price_per_instance_hour=_money(price),
        instance_number=e.target_instance_number,
        price_per_hour=_money(billing.billed_per_hour),
        cost_so_far=_money(billing.cost_so_far),
        cost_this_month=_money(billing.cost_this_month),
        budget_state=budget.state if budget else BudgetState.OK,
        budget_message=budget.message if budget else None,
    )


def _status_info(view: EndpointView, billing: EndpointBilling | None) -> str | None:
    """The derived status info and, while it runs, its owner's budget when near or at
    its limit. A stopped endpoint says why it stopped (moorage's stop at the limit
    names it); ``billing_metadata`` carries the budget either way."""
    derived = view.status.status_info
    budget = billing.budget if billing else None
    if view.endpoint.desired_state is DesiredState.STOPPED:
        if view.endpoint.stop_reason and (budget is None or budget.message is None):
            # Stopped at a limit that has since been raised (or removed).
            return f"{derived}; the limit is no longer reached: POST .../start runs it again"
        return derived
    if budget is None or budget.message is None:
        return derived
    return budget.message if derived is None else f"{derived}; {budget.message}"


def scale_policy(policy: ScalePolicy | None) -> schemas.ScalePolicy | None:
    if policy is None:
        return None
    return schemas.ScalePolicy(
        metric=policy.metric.value,
        target=policy.target,
        min_instances=policy.min_instances,
        max_instances=policy.max_instances,
        scale_up_delay_s=policy.scale_up_delay_s,
        scale_down_delay_s=policy.scale_down_delay_s,
        window_s=policy.window_s,
    )


def endpoint(
    view: EndpointView, base_url: str, billing: EndpointBilling | None = None
) -> schemas.Endpoint:
    e = view.endpoint
    flavor_record = view.flavor.flavor if view.flavor else None
    ready = [r for r in view.replicas if r.state is ReplicaState.READY]
    return schemas.Endpoint(
        service_id=e.service_id,
        name=e.name,
        description=e.description,
        user_id=e.user_id,
        status=view.status.status,
        status_info=_status_info(view, billing),
        resource_metadata=schemas.ResourceMetadata(
            resource_display_name=flavor_record.display_name if flavor_record else None,
            scale_type=e.scale_type,
            flavor_id=e.flavor_id,
            target_instance_number=e.target_instance_number,
            scale_policy=scale_policy(e.scale_policy),
            VRAM=flavor_record.vram if flavor_record else None,
            image_size=None,
        ),
        billing_metadata=billing_metadata(view, billing),
        endpoint_metadata=schemas.EndpointMetadata(
            endpoint_url=base_url.rstrip("/") + GATEWAY_PATH + e.service_id,
            ready_replicas=len(ready),
            replicas=[
                schemas.ReplicaInfo(
                    replica_id=r.replica_id,
                    state=r.state,
                    address=shown_address(r.address),
                    revision=r.revision,
                    since=format_timestamp(r.state_since),
                    last_failure=r.last_failure,
                )
                for r in view.replicas
            ],
        ),
        deploy_metadata=schemas.DeployMetadata(
            image_url=e.deploy.image_url,
            command=e.deploy.command,
            port=e.deploy.port,
            gpu_num=e.deploy.gpu_num,
            env=dict(e.deploy.env),
            readiness_probe=e.deploy.readiness_probe,
            resources=e.deploy.resources,
            args=list(e.deploy.args),
            volumes=[
                schemas.Volume(name=v.name, mount_path=v.mount_path) for v in e.deploy.volumes
            ],
            shm_size_mb=e.deploy.shm_size_mb,
            secrets=list(e.deploy.secrets),
            revision=e.revision,
        ),
        gateway_metadata=e.gateway,
        service_type=e.service_type,
        created_at=format_timestamp(e.created_at),
        updated_at=format_timestamp(e.updated_at),
        deleted_at=format_timestamp(e.deleted_at),
        is_deleted=e.is_deleted,
        payment_type=e.payment_type,
    )


def endpoint_page(
    page: EndpointPage, base_url: str, billing: Mapping[str, EndpointBilling]
) -> schemas.EndpointPage:
    return schemas.EndpointPage(
        service_list=[
            endpoint(v, base_url, billing.get(v.endpoint.service_id)) for v in page.items
        ],
        total=page.total,
        page=page.page,
        page_size=page.page_size,
    )


def user(u: User) -> schemas.User:
    return schemas.User(
        user_id=u.user_id,
        name=u.name,
        is_admin=u.is_admin,
        created_at=format_timestamp(u.created_at),
    )


def token(t: ApiToken) -> schemas.Token:
    return schemas.Token(
        token_id=t.token_id,
        user_id=t.user_id,
        name=t.name,
        prefix=t.prefix,
        created_at=format_timestamp(t.created_at),
        revoked_at=format_timestamp(t.revoked_at),
        is_revoked=t.revoked_at is not None,
    )


def issued_token(t: ApiToken, text: str) -> schemas.IssuedToken:
    return schemas.IssuedToken(**token(t).model_dump(), token=text)
