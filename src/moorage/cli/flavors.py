"""``moorage flavors``: what replicas can run on here, with prices and room left."""

from __future__ import annotations

from rich.table import Table

from moorage.api.schemas import FlavorList
from moorage.cli.common import TokenOption, UrlOption, connect
from moorage.cli.output import Format, OutputOption, cell, new_table, show


def flavors_table(found: FlavorList) -> Table:
    table = new_table(
        "FLAVOR ID", "NAME", "GPUS", "AVAILABLE", "USD/H", "CNY/H", "NMT/H", "DETAILS"
    )
    for f in found.flavor_list:
        details = ", ".join(f"{k}={v}" for k, v in sorted(f.meta_info.items()))
        table.add_row(
            f.flavor_id,
            f.display_name,
            str(f.node_max_gpu),
            str(f.available_num),
            str(f.billing.usd_price_unit),
            str(f.billing.cny_price_unit),
            str(f.billing.nmt_price_unit),
            cell(details),
        )
    return table


def flavors(
    output: OutputOption = Format.table, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List the flavors an endpoint can run on."""
    with connect(url, token) as client:
        found = FlavorList(flavor_list=client.list_flavors())
        show(found, output, lambda: flavors_table(found))
