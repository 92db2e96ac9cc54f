"""GPU discovery through a fake NVML, grouping into flavors, and the flavors file's
GPU keys: what ``GET /v1/inference-service/flavor`` is built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.inventory.discovery import discover
from moorage.inventory.nvml import FakeNvml, NvmlDevice, NvmlReport
from moorage.models.flavor_file import load_flavor_file, load_hidden_gpus
from moorage.models.flavors import FlavorFileError
from moorage.models.gpu_flavors import merge_gpu_flavors
from moorage.models.gpus import Gpu, flavor_name, vram_label

H100 = "NVIDIA H100 80GB HBM3"
L4 = "NVIDIA L4"


def report() -> NvmlReport:
    return NvmlReport(
        "550.54.15",
        "12.4",
        (
            NvmlDevice(0, "GPU-h100-a", H100, 81559),
            NvmlDevice(1, "GPU-l4-a", L4, 23034),
            NvmlDevice(2, "GPU-h100-b", H100, 81559),
        ),
    )


def test_discovered_gpus_are_grouped_into_one_flavor_per_model() -> None:
    found = discover(FakeNvml(report()))

    flavors = merge_gpu_flavors([], found.gpus, cuda=found.cuda_version, driver="550.54.15")

    by_name = {f.display_name: f for f in flavors}
    assert list(by_name) == ["NVIDIA_H100_80GB_HBM3", "NVIDIA_L4"]
    h100 = by_name["NVIDIA_H100_80GB_HBM3"]
    assert [g.uuid for g in h100.gpus] == ["GPU-h100-a", "GPU-h100-b"]
    assert (h100.capacity, h100.node_max_gpu, h100.vram) == (2, 2, "80GB")
    assert h100.meta_info["cuda"] == "12.4"
    assert by_name["NVIDIA_L4"].vram == "22GB"


def test_a_host_without_a_driver_offers_no_gpu_and_says_why() -> None:
    found = discover(FakeNvml(None))

    assert found.gpus == ()
    assert found.problem is not None
    assert "NVML" in found.problem


def test_the_operators_file_prices_renames_and_hides_discovered_gpus(tmp_path: Path) -> None:
    path = tmp_path / "flavors.toml"
    path.write_text(
        'hidden_gpus = ["GPU-h100-b"]\n'
        "[[flavor]]\n"
        'display_name = "H100"\ncluster_flavor_id = "h100"\n'
        f'gpu_model = "{H100}"\n'
        "billing = { usd_price_unit = 2.5 }\n"
    )
    found = discover(FakeNvml(report()))

    flavors = merge_gpu_flavors(
        load_flavor_file(path), found.gpus, cuda="12.4", hidden=load_hidden_gpus(path)
    )

    h100, l4 = flavors
    assert h100.display_name == "H100"
    assert h100.price_per_hour("usd") == 2.5
    assert [g.uuid for g in h100.gpus] == ["GPU-h100-a"]
    assert h100.capacity == 1
    assert l4.display_name == "NVIDIA_L4"
    assert l4.price_per_hour("usd") == 0.0


def test_gpus_nvml_cannot_see_are_declared_per_flavor_with_their_node(tmp_path: Path) -> None:
    path = tmp_path / "flavors.toml"
    path.write_text(
        "[[flavor]]\n"
        'display_name = "A100"\ncluster_flavor_id = "a100"\n'
        'gpus = [{ uuid = "GPU-1", index = 0, node = "n1" },'
        ' { uuid = "GPU-2", index = 1, node = "n1" },'
        ' { uuid = "GPU-3", index = 0, node = "n2" }]\n'
    )

    (a100,) = merge_gpu_flavors(load_flavor_file(path), [])

    assert [(g.node, g.index, g.uuid) for g in a100.gpus] == [
        ("n1", 0, "GPU-1"),
        ("n1", 1, "GPU-2"),
        ("n2", 0, "GPU-3"),
    ]
    assert (a100.capacity, a100.node_max_gpu) == (3, 2)


@pytest.mark.parametrize(
    ("gpus", "problem"),
    [
        ('[{ uuid = "GPU-1" }, { uuid = "GPU-1", index = 1 }]', "uuid appears twice"),
        ('[{ uuid = "GPU-1" }, { uuid = "GPU-2" }]', "same node and index"),
        ('[{ uuid = "GPU-1", colour = "red" }]', "colour: unknown key"),
    ],
)
def test_a_wrong_gpu_declaration_names_the_flavor_and_the_field(
    tmp_path: Path, gpus: str, problem: str
) -> None:
    path = tmp_path / "flavors.toml"
    path.write_text(f'[[flavor]]\ndisplay_name = "A"\ncluster_flavor_id = "a"\ngpus = {gpus}\n')

    with pytest.raises(FlavorFileError, match=problem) as raised:
        load_flavor_file(path)
    assert "'A'" in str(raised.value)
    assert "gpus" in str(raised.value)


def test_one_gpu_declared_in_two_flavors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flavors.toml"
    path.write_text(
        '[[flavor]]\ndisplay_name = "A"\ncluster_flavor_id = "a"\ngpus = [{ uuid = "G" }]\n'
        '[[flavor]]\ndisplay_name = "B"\ncluster_flavor_id = "b"\ngpus = [{ uuid = "G" }]\n'
    )

    with pytest.raises(FlavorFileError, match="GPU G is declared in flavors 'A' and 'B'"):
        load_flavor_file(path)


def test_names_and_memory_read_as_the_reference_shows_them() -> None:
    assert flavor_name(H100) == "NVIDIA_H100_80GB_HBM3"
    assert flavor_name("NVIDIA GeForce RTX 4090") == "NVIDIA_GeForce_RTX_4090"
    assert vram_label(81559) == "80GB"
    assert Gpu.from_json(Gpu("n", 1, "u", "m", 2).to_json()) == Gpu("n", 1, "u", "m", 2)


def _declared(tmp_path: Path, gpus: str) -> str | None:
    path = tmp_path / "flavors.toml"
    path.write_text(f'[[flavor]]\ndisplay_name = "L4"\ncluster_flavor_id = "l4"\ngpus = {gpus}\n')
    (flavor,) = merge_gpu_flavors(load_flavor_file(path), [])
    return flavor.vram


@pytest.mark.parametrize(
    ("gpus", "vram"),
    [
        # As NVML's 23034 MiB shows (22GB), a GPU without memory_mib not counting.
        ('[{ uuid = "a", index = 0, memory_mib = 23034 }]', "22GB"),
        ('[{ uuid = "a", index = 0, memory_mib = 23034 }, { uuid = "b", index = 1 }]', "22GB"),
        ('[{ uuid = "a", index = 0 }, { uuid = "b", index = 1, memory_mib = 81559 }]', "80GB"),
        # No memory declared: no VRAM, never "0GB".
        ('[{ uuid = "a", index = 0 }]', None),
    ],
)
def test_declared_memory_shows_as_vram_as_discovered_memory_does(
    tmp_path: Path, gpus: str, vram: str | None
) -> None:
    assert _declared(tmp_path, gpus) == vram
    if vram is not None:
        memory = 23034 if vram == "22GB" else 81559
        found = merge_gpu_flavors([], [Gpu("local", 0, "n", "M", memory)])
        assert found[0].vram == vram


def test_each_gpus_device_file_is_found_by_its_minor_number(tmp_path: Path) -> None:
    (tmp_path / "nvidia2").touch()
    (tmp_path / "nvidia0").touch()
    devices = (
        NvmlDevice(0, "GPU-a", H100, 81559, minor_number=2),
        NvmlDevice(1, "GPU-b", H100, 81559, minor_number=0),
        NvmlDevice(2, "GPU-no-file", H100, 81559, minor_number=5),
        NvmlDevice(3, "GPU-no-minor", H100, 81559),
    )

    found = discover(FakeNvml(NvmlReport("550", "12.4", devices)), device_dir=tmp_path)

    assert found.devices == {"GPU-a": tmp_path / "nvidia2", "GPU-b": tmp_path / "nvidia0"}
