"""The operator's flavor file, stable flavor ids, and the built-in flavors."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from moorage.errors import MoorageError
from moorage.inventory.discovery import discover
from moorage.inventory.nvml import Nvml
from moorage.models.builtin_flavors import (
    CPU_FLAVOR_KEY,
    builtin_flavors,
    cpu_flavor,
)
from moorage.models.flavor_file import load_flavor_file
from moorage.models.flavors import Flavor, FlavorFileError, stable_flavor_id
from moorage.models.gpu_flavors import merge_gpu_flavors
from moorage.models.gpus import Gpu

A100 = """
[[flavor]]
display_name = "A100"
cluster_flavor_id = "a100-80g"
cluster_id = "gpu-farm"
capacity = 4
node_max_gpu = 8
vram = "80GB"
meta_info = { region = "eu-west", gpu = "A100" }
billing = { usd_price_unit = 1.5, cny_price_unit = 10, nmt_price_unit = 0.75 }
"""

CPU = """
[[flavor]]
display_name = "CPU"
cluster_flavor_id = "cpu"
"""


def write(tmp_path: Path, text: str, name: str = "flavors.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(FlavorFileError) as raised:
        load_flavor_file(write(tmp_path, text))
    return raised.value.message


# -- reading the file -----------------------------------------------------------


def test_flavor_file_entry_is_read_in_full(tmp_path: Path) -> None:
    [flavor] = load_flavor_file(write(tmp_path, A100))

    assert flavor.display_name == "A100"
    assert flavor.cluster_id == "gpu-farm"
    assert flavor.cluster_flavor_id == "a100-80g"
    assert flavor.capacity == 4
    assert flavor.node_max_gpu == 8
    assert flavor.vram == "80GB"
    assert flavor.meta_info == {"region": "eu-west", "gpu": "A100"}
    assert flavor.billing() == {
        "usd_price_unit": 1.5,
        "cny_price_unit": 10.0,
        "nmt_price_unit": 0.75,
    }


def test_minimal_entry_gets_documented_defaults(tmp_path: Path) -> None:
    [flavor] = load_flavor_file(write(tmp_path, CPU))

    assert flavor.cluster_id == "1"
    assert flavor.capacity == 1
    assert flavor.node_max_gpu == 0
    assert flavor.vram is None
    assert flavor.meta_info == {}
    assert flavor.billing() == {"usd_price_unit": 0.0, "cny_price_unit": 0.0, "nmt_price_unit": 0.0}


def test_entries_keep_the_order_of_the_file(tmp_path: Path) -> None:
    flavors = load_flavor_file(write(tmp_path, A100 + CPU))

    assert [f.display_name for f in flavors] == ["A100", "CPU"]


def test_price_of_an_unknown_currency_is_zero(tmp_path: Path) -> None:
    [flavor] = load_flavor_file(write(tmp_path, A100))

    assert flavor.price_per_hour("eur") == 0.0
    assert flavor.price_per_hour("usd") == 1.5


# -- stable ids -----------------------------------------------------------------


def test_flavor_ids_survive_a_restart(tmp_path: Path) -> None:
    path = write(tmp_path, A100 + CPU)

    assert [f.flavor_id for f in load_flavor_file(path)] == [
        f.flavor_id for f in load_flavor_file(path)
    ]


def test_flavor_ids_survive_reordering_the_file(tmp_path: Path) -> None:
    before = {f.display_name: f.flavor_id for f in load_flavor_file(write(tmp_path, A100 + CPU))}
    after = {
        f.display_name: f.flavor_id
        for f in load_flavor_file(write(tmp_path, CPU + A100, "reordered.toml"))
    }

    assert before == after


def test_flavor_ids_survive_renaming_and_repricing(tmp_path: Path) -> None:
    [original] = load_flavor_file(write(tmp_path, A100))
    edited = A100.replace('display_name = "A100"', 'display_name = "A100 80G"').replace(
        "usd_price_unit = 1.5", "usd_price_unit = 2.0"
    )

    [renamed] = load_flavor_file(write(tmp_path, edited, "edited.toml"))

    assert renamed.flavor_id == original.flavor_id


def test_generated_id_is_derived_from_cluster_cluster_flavor_and_region(tmp_path: Path) -> None:
    [flavor] = load_flavor_file(write(tmp_path, A100))

    assert flavor.flavor_id == stable_flavor_id("gpu-farm", "a100-80g", "eu-west")
    assert len(flavor.flavor_id) == 32
    assert set(flavor.flavor_id) <= set("0123456789abcdef")


def test_same_cluster_flavor_in_another_region_is_another_flavor() -> None:
    assert stable_flavor_id("c", "a100", "eu") != stable_flavor_id("c", "a100", "us")
    assert stable_flavor_id("c", "a100", "eu") != stable_flavor_id("d", "a100", "eu")
    assert stable_flavor_id("c", "a100", "eu") != stable_flavor_id("c", "h100", "eu")


def test_explicit_flavor_id_is_kept(tmp_path: Path) -> None:
    text = CPU + 'flavor_id = "0123456789abcdef0123456789abcdef"\n'

    [flavor] = load_flavor_file(write(tmp_path, text))

    assert flavor.flavor_id == "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "flavor_id",
    ["0123456789ABCDEF0123456789ABCDEF", "abc", "0123456789abcdef0123456789abcdeg"],
    ids=["uppercase", "too-short", "not-hex"],
)
def test_malformed_explicit_flavor_id_is_rejected(tmp_path: Path, flavor_id: str) -> None:
    message = load_error(tmp_path, CPU + f'flavor_id = "{flavor_id}"\n')

    assert "flavor #1 ('CPU')" in message
    assert "flavor_id: must be 32 lowercase hex characters" in message


def test_two_entries_with_the_same_identity_are_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, A100 + A100.replace('"A100"', '"A100 again"', 1))

    assert "appears twice" in message
    assert stable_flavor_id("gpu-farm", "a100-80g", "eu-west") in message


# -- errors name the entry and the key --------------------------------------------


@pytest.mark.parametrize("key", ["display_name", "cluster_flavor_id"])
def test_missing_required_key_is_named_with_its_entry(tmp_path: Path, key: str) -> None:
    second = "\n".join(line for line in A100.splitlines() if not line.startswith(key))

    message = load_error(tmp_path, CPU + second)

    assert "flavor #2" in message
    assert key in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("capacity = -1", "capacity"),
        ('capacity = "4"', "capacity"),
        ("capacity = 1.5", "capacity"),
        ("node_max_gpu = -2", "node_max_gpu"),
        ('node_max_gpu = "8"', "node_max_gpu"),
        ("billing = { usd_price_unit = -0.5 }", "billing.usd_price_unit"),
        ('billing = { cny_price_unit = "free" }', "billing.cny_price_unit"),
        ("capacity = true", "capacity"),
        ("node_max_gpu = false", "node_max_gpu"),
        ("billing = { usd_price_unit = true }", "billing.usd_price_unit"),
    ],
)
def test_invalid_value_is_rejected_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    message = load_error(tmp_path, CPU + line + "\n")

    assert "flavor #1" in message
    assert key in message


def test_error_names_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, CPU + "capacity = -1\n")

    assert str(tmp_path / "flavors.toml") in message


def test_error_names_the_file_the_flavor_and_the_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, CPU + A100.replace("capacity = 4", "capacity = -4"))

    assert message.startswith(f"{tmp_path / 'flavors.toml'}: flavor #2 ('A100'): capacity: ")
    assert "greater than or equal to 0" in message
    assert "-4" in message


@pytest.mark.parametrize(
    ("line", "key"),
    [("capacty = 4", "capacty"), ("billing = { eur_price_unit = 1.0 }", "billing.eur_price_unit")],
)
def test_a_misspelt_key_is_rejected_not_ignored(tmp_path: Path, line: str, key: str) -> None:
    message = load_error(tmp_path, CPU + line + "\n")

    assert f"{key}: unknown key" in message


def test_numbers_are_accepted_where_names_and_meta_info_are_text(tmp_path: Path) -> None:
    text = CPU + 'cluster_id = 7\nvram = 24\nmeta_info = { cuda = 12.0, region = "eu" }\n'

    [flavor] = load_flavor_file(write(tmp_path, text))

    assert (flavor.cluster_id, flavor.vram) == ("7", "24")
    assert flavor.meta_info == {"cuda": "12.0", "region": "eu"}
    assert flavor.flavor_id == stable_flavor_id("7", "cpu", "eu")


def test_zero_capacity_is_allowed_to_take_a_flavor_out_of_service(tmp_path: Path) -> None:
    [flavor] = load_flavor_file(write(tmp_path, CPU + "capacity = 0\n"))

    assert flavor.capacity == 0


@pytest.mark.parametrize(
    "text",
    ["", "title = 'no flavors here'\n", "flavor = []\n"],
    ids=["empty", "none", "empty-list"],
)
def test_file_without_flavors_is_rejected(tmp_path: Path, text: str) -> None:
    assert "expected one or more [[flavor]] tables" in load_error(tmp_path, text)


def test_entry_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    assert "flavor #1: must be a table" in load_error(tmp_path, "flavor = [1, 2]\n")


def test_malformed_toml_is_reported_as_a_flavor_file_error(tmp_path: Path) -> None:
    assert "cannot read flavor file" in load_error(tmp_path, "[[flavor]\ndisplay_name = ")


def test_missing_file_is_reported_as_a_flavor_file_error(tmp_path: Path) -> None:
    with pytest.raises(FlavorFileError, match="cannot read flavor file"):
        load_flavor_file(tmp_path / "absent.toml")


def test_flavor_file_error_reaches_users_with_a_stable_code() -> None:
    error = FlavorFileError("bad")

    assert isinstance(error, MoorageError)
    assert error.code == "invalid_flavor_file"


@pytest.mark.parametrize(
    ("line", "key"),
    [('meta_info = "eu-west"', "meta_info"), ("billing = 5", "billing")],
)
def test_non_table_meta_info_or_billing_is_a_flavor_file_error(
    tmp_path: Path, line: str, key: str
) -> None:
    message = load_error(tmp_path, CPU + line + "\n")

    assert "flavor #1" in message
    assert key in message


# -- built-in flavors ---------------------------------------------------------------


class _NVMLError(Exception):
    pass


def fake_nvml(gpus: list[tuple[str | bytes, int]] | None) -> types.ModuleType:
    """A stand-in for pynvml: ``None`` means no NVIDIA driver on this host."""
    module = types.ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if gpus is None:
            raise _NVMLError("NVML Shared Library Not Found")

    def memory(handle: int) -> Any:
        assert gpus is not None
        return types.SimpleNamespace(total=gpus[handle][1])

    def name(handle: int) -> str | bytes:
        assert gpus is not None
        return gpus[handle][0]

    attributes: dict[str, Any] = {
        "NVMLError": _NVMLError,
        "nvmlInit": init,
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlDeviceGetCount": lambda: len(gpus or []),
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetName": name,
        "nvmlDeviceGetUUID": lambda handle: f"GPU-{handle}",
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlSystemGetDriverVersion": lambda: b"550.54.15",
        "calls": calls,
    }
    for attribute, value in attributes.items():
        setattr(module, attribute, value)
    return module


def detected(nvml: types.ModuleType) -> list[Flavor]:
    """The built-in flavors merged with what ``nvml`` reports, as ``moorage serve`` does."""
    found = discover(Nvml(nvml))
    return merge_gpu_flavors(
        builtin_flavors(), found.gpus, cuda=found.cuda_version, driver=found.driver_version
    )


def detected_gpu_flavors() -> list[Flavor]:
    return detected(sys.modules["pynvml"])[1:]


def test_cpu_flavor_is_always_offered_even_without_nvidia_drivers() -> None:
    flavors = detected(fake_nvml(None))

    assert [f.display_name for f in flavors] == ["CPU"]
    assert flavors[0].node_max_gpu == 0
    assert flavors[0].capacity >= 8


def test_cpu_flavor_id_is_stable_across_restarts() -> None:
    assert cpu_flavor().flavor_id == cpu_flavor().flavor_id
    assert cpu_flavor().flavor_id == stable_flavor_id("local", CPU_FLAVOR_KEY, "local")


def test_each_detected_gpu_model_becomes_one_flavor_sized_by_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gib = 2**30
    nvml = fake_nvml(
        [
            (b"NVIDIA H100 80GB HBM3", 80 * gib),
            ("NVIDIA L4", 23 * gib + gib // 2 + 1),
            (b"NVIDIA H100 80GB HBM3", 80 * gib),
        ]
    )
    cpu, *gpus = detected(nvml)

    assert cpu.display_name == "CPU"
    by_name = {f.display_name: f for f in gpus}
    assert set(by_name) == {"NVIDIA_H100_80GB_HBM3", "NVIDIA_L4"}
    h100, l4 = by_name["NVIDIA_H100_80GB_HBM3"], by_name["NVIDIA_L4"]
    assert (h100.capacity, h100.node_max_gpu, h100.vram) == (2, 2, "80GB")
    assert (l4.capacity, l4.node_max_gpu, l4.vram) == (1, 1, "24GB")
    assert h100.meta_info["driver"] == "550.54.15"
    assert h100.billing() == {"usd_price_unit": 0.0, "cny_price_unit": 0.0, "nmt_price_unit": 0.0}
    assert len({cpu.flavor_id, h100.flavor_id, l4.flavor_id}) == 3
    assert nvml.calls == ["init", "shutdown"]


def test_detected_gpu_flavor_ids_do_not_depend_on_device_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpus: list[tuple[str | bytes, int]] = [("NVIDIA A10", 24 * 2**30), ("NVIDIA L4", 24 * 2**30)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(gpus))
    first = {f.display_name: f.flavor_id for f in detected_gpu_flavors()}
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(list(reversed(gpus))))
    second = {f.display_name: f.flavor_id for f in detected_gpu_flavors()}

    assert first == second


def test_the_start_up_line_names_each_flavor_its_size_and_its_prices() -> None:
    slots = Flavor("a" * 32, "CPU", "local", "cpu", capacity=4, node_max_gpu=0)
    gpus = dataclasses.replace(
        Flavor("b" * 32, "L4", "local", "l4", capacity=2, node_max_gpu=2),
        gpus=(Gpu("local", 0, "GPU-0"), Gpu("local", 1, "GPU-1")),
        prices={"usd": 7.2, "nmt": 0.147164},
    )
    assert slots.offer() == f"flavor CPU ({'a' * 32}): 4 replicas, free"
    assert gpus.offer() == (f"flavor L4 ({'b' * 32}): 2 GPUs, 7.2 usd, 0.147164 nmt per GPU-hour")
    assert gpus.priced_in() == ("usd", "nmt")


@pytest.mark.parametrize("price", ["inf", "nan", "-1.0"])
def test_a_price_must_be_a_finite_amount_of_0_or_more(tmp_path: Path, price: str) -> None:
    message = load_error(tmp_path, CPU + f"billing = {{ usd_price_unit = {price} }}\n")

    assert "flavor #1 ('CPU'): billing.usd_price_unit: " in message
