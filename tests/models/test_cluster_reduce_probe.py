"""experiments/cluster_reduce_probe.py compiles for sm_90 without a GPU (where NVRTC is found: the CUDA toolkit's,
a pip wheel's next to torch, or ``FASTDLLM_NVRTC``): the kernel is a cluster of two or four CTAs that reduces through
distributed shared memory behind cluster barriers, which is what the probe claims to measure."""

from __future__ import annotations

import os

import pytest
from checkpoint_helpers import experiment_script


def _nvrtc(probe):
    try:
        return probe.nvrtc_library(os.environ.get("FASTDLLM_NVRTC"))
    except (OSError, RuntimeError):
        pytest.skip("no NVRTC library (install nvidia-cuda-nvrtc-cu12 or set FASTDLLM_NVRTC)")


@pytest.mark.parametrize("rows, slices", [(128, 4), (64, 2)])
def test_the_kernel_is_a_cluster_reducing_through_distributed_shared_memory(rows, slices):
    probe = experiment_script("cluster_reduce_probe")
    ptx = probe.compile_ptx(_nvrtc(probe), rows, slices)
    assert f".reqnctapercluster {slices}, 1, 1" in ptx and ".explicitcluster" in ptx
    loads = rows * probe.X_ROWS // 4 // 256  # float4s per thread: the whole tile's share, one per slice
    assert ptx.count("mapa.shared::cluster.u32") == loads and ptx.count("ld.shared::cluster.v4.f32") == loads
    assert ptx.count("barrier.cluster.arrive.release.aligned") == 3  # dsmem: before and after the reads; global: one
    assert ptx.count("ld.global.cg.v4.f32") == loads  # the global variant reads past L1


def test_a_tile_that_does_not_split_is_refused():
    probe = experiment_script("cluster_reduce_probe")
    with pytest.raises(ValueError, match="does not split evenly"):
        probe.compile_ptx(None, 64, 16)  # 2048 float4s, not a multiple of 16 slices x 256 threads


def test_bad_tiles_are_refused():
    probe = experiment_script("cluster_reduce_probe")
    with pytest.raises(SystemExit):
        probe.main(["--tiles", "0", "--compile-only"])
