"""What a split-K reduction through a thread-block cluster's distributed shared memory costs on Hopper.

Round 15's Gluon GEMM (``experiments/hopper_gemm.py``) loses to cuBLAS at the prefix windows' narrow products only
by its split-K epilogue: its four slices' fp32 partials go through global memory, 6-10 µs per launch, where the
kernel without that epilogue would be ~20 % faster than cuBLAS (docs/speed.md, rounds 15-16). A CUDA kernel could
run the four slices of a tile as one cluster of four CTAs and sum the partials on the chip. This probe measures that
reduction alone, on the epilogue's real sizes: tiles of 128 weight rows × 128 x rows in 4 slices (a 4096-column
product is 32 such tiles, 128 CTAs) and of 64 × 128 in 2 slices (64 tiles, 128 CTAs), each CTA holding its fp32
partial (64 or 32 KB, as the accumulator would), one launch per replay, in three variants:

- ``none``: each CTA stages its partial in shared memory and writes its share of the tile in bf16 from it, no
  reduction (what any epilogue pays);
- ``dsmem``: the four CTAs of a cluster stage their partials in shared memory, meet at a cluster barrier, and each
  sums its share of the tile over the four CTAs' shared memory (``mapa`` / ``ld.shared::cluster``) and writes it;
- ``global``: the partials go to global memory, the cluster barrier orders them, and each CTA sums its share from
  there (round 15's traffic, with a hardware barrier instead of its atomic counters).

The partials are read from an input tensor at the start (the same cost in every variant) and the bf16 sums are
checked against ``torch`` sums. Compiled at run time by NVRTC (``libnvrtc`` of the CUDA toolkit or of the
``nvidia-cuda-nvrtc`` wheel) to PTX for sm_90 and loaded through the driver API; needs a Hopper GPU to run.
``--compile-only`` compiles without a GPU (the CPU test).

    python experiments/cluster_reduce_probe.py --out $OUT/cluster_reduce.json
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import statistics
import sys
import time

import torch

THREADS = 256
X_ROWS = 128  # x rows of a tile (the partial's second side)
CONFIGS = ((128, 4), (64, 2))  # (weight rows of a tile, slices of K): the Gluon kernel's four- and two-slice tiles
VARIANTS = {"none": 0, "dsmem": 1, "global": 2}

SOURCE = r"""
// TILE (fp32 values of one CTA's partial) and SLICES (CTAs per cluster) come from the compile options
#define F4 (TILE / 4)            // float4s of a partial
#define PER (F4 / 256)           // float4s of a partial per thread
#define SHARE (F4 / SLICES)      // float4s of the tile each CTA sums
#define SH (SHARE / 256)         // of those, per thread
typedef unsigned short bf16_bits;

__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r)); return r;
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ unsigned shared_address(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
__device__ __forceinline__ float4 load_remote(unsigned local, unsigned rank) {
    unsigned remote; float4 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(remote));
    return v;
}
__device__ __forceinline__ float4 load_cg(const float4* p) {
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    return v;
}
__device__ __forceinline__ void add_slices(float4* sum, const float4* v) {  // sum[j] = v[S·j] + ... + v[S·j + S - 1], in order
    #pragma unroll
    for (int j = 0; j < SH; ++j) {
        sum[j] = v[SLICES * j];
        #pragma unroll
        for (int s = 1; s < SLICES; ++s) {
            const float4 w = v[SLICES * j + s];
            sum[j].x += w.x; sum[j].y += w.y; sum[j].z += w.z; sum[j].w += w.w;
        }
    }
}
__device__ __forceinline__ bf16_bits to_bf16(float f) {  // round to nearest even (no NaNs here)
    unsigned b = __float_as_uint(f);
    return (bf16_bits)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// grid: tiles x SLICES CTAs (one cluster per tile); src [tiles, SLICES, TILE] fp32 partials; part: the same shape,
// scratch (global variant); y [tiles, TILE] bf16 (as uint16). Float4 i of a partial is held by thread i % 256.
extern "C" __global__ void __cluster_dims__(SLICES, 1, 1) __launch_bounds__(256, 1)
cluster_reduce(const float4* __restrict__ src, float4* part, unsigned long long* y, int mode) {
    extern __shared__ float4 smem[];  // [F4] float4: this CTA's partial
    const unsigned rank = cluster_rank();
    const unsigned tile = blockIdx.x / SLICES;
    const unsigned t = threadIdx.x;
    const float4* mine = src + ((size_t)tile * SLICES + rank) * F4;
    float4 acc[PER];  // the "accumulator": 4 · PER fp32 per thread
    #pragma unroll
    for (int i = 0; i < PER; ++i) acc[i] = mine[i * 256 + t];
    float4 sum[SH];  // this CTA's share of the tile: float4s [rank · SHARE, (rank + 1) · SHARE), SH per thread
    float4 v[SLICES * SH];  // every slice's loads issued before the first add
    if (mode == 2) {
        float4* out = part + ((size_t)tile * SLICES + rank) * F4;
        #pragma unroll
        for (int i = 0; i < PER; ++i) out[i * 256 + t] = acc[i];
        cluster_sync();
        #pragma unroll
        for (int k = 0; k < SLICES * SH; ++k)
            v[k] = load_cg(part + ((size_t)tile * SLICES + k % SLICES) * F4 + rank * SHARE + (k / SLICES) * 256 + t);
        add_slices(sum, v);
    } else {
        #pragma unroll
        for (int i = 0; i < PER; ++i) smem[i * 256 + t] = acc[i];
        if (mode == 1) {
            cluster_sync();
            #pragma unroll
            for (int k = 0; k < SLICES * SH; ++k)
                v[k] = load_remote(shared_address(&smem[rank * SHARE + (k / SLICES) * 256 + t]), k % SLICES);
            add_slices(sum, v);
            cluster_sync();  // no CTA leaves while another still reads its shared memory
        } else {
            __syncthreads();
            #pragma unroll
            for (int j = 0; j < SH; ++j) sum[j] = smem[rank * SHARE + j * 256 + t];
        }
    }
    unsigned long long* row = y + (size_t)tile * F4 + rank * SHARE;
    #pragma unroll
    for (int j = 0; j < SH; ++j) {
        unsigned long long packed = (unsigned long long)to_bf16(sum[j].x) | ((unsigned long long)to_bf16(sum[j].y) << 16)
            | ((unsigned long long)to_bf16(sum[j].z) << 32) | ((unsigned long long)to_bf16(sum[j].w) << 48);
        row[j * 256 + t] = packed;
    }
}
"""


def _library(names: list[str], patterns: list[str]) -> ctypes.CDLL:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    for pattern in patterns:
        for path in sorted(glob.glob(pattern), reverse=True):
            try:
                return ctypes.CDLL(path)
            except OSError:
                pass
    raise RuntimeError(f"none of {names} or {patterns} loads; install the CUDA toolkit or `pip install "
                       "nvidia-cuda-nvrtc-cu12` (NVRTC), or pass --nvrtc PATH")


def nvrtc_library(path: str | None = None) -> ctypes.CDLL:
    """libnvrtc: ``path``, the system's, the CUDA toolkit's, or a pip wheel's next to torch."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    if path:
        return ctypes.CDLL(path)
    return _library(["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"],
                    ["/usr/local/cuda/lib64/libnvrtc.so*", f"{site}/nvidia/*/lib/libnvrtc.so*",
                     f"{site}/nvidia/cu*/lib/libnvrtc.so*"])


def compile_ptx(nvrtc: ctypes.CDLL, rows: int = 128, slices: int = 4, arch: str = "compute_90") -> str:
    """The kernel's PTX for ``arch``, for tiles of ``rows`` weight rows × ``X_ROWS`` split into ``slices`` CTAs;
    raises with NVRTC's log on a compile error."""
    if (rows * X_ROWS // 4) % (256 * slices):
        raise ValueError(f"a {rows} x {X_ROWS} tile does not split evenly over {slices} slices of 256 threads")
    prog = ctypes.c_void_p()
    check = _checker(nvrtc)
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), SOURCE.encode(), b"cluster_reduce.cu", 0, None, None), prog)
    opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17", b"--use_fast_math",
            f"-DTILE={rows * X_ROWS}".encode(), f"-DSLICES={slices}".encode()]
    status = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    if status != 0:
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"NVRTC failed ({status}):\n{log.value.decode(errors='replace')}")
    size = ctypes.c_size_t()
    check(nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size)), prog)
    ptx = ctypes.create_string_buffer(size.value)
    check(nvrtc.nvrtcGetPTX(prog, ptx), prog)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return ptx.value.decode()


def _checker(nvrtc):
    def check(status, prog=None):
        if status != 0:
            nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"NVRTC error {status}: {nvrtc.nvrtcGetErrorString(status).decode()}")
    return check


class Kernel:
    """The PTX loaded through the driver API into torch's current context, launched on torch's current stream."""

    def __init__(self, ptx: str, rows: int, slices: int):
        self.tile, self.slices = rows * X_ROWS, slices  # fp32 values of a partial, CTAs per cluster
        self.smem = 4 * self.tile  # bytes: one partial
        torch.cuda.init()
        torch.empty(1, device="cuda")  # the primary context, current on this thread
        self.cuda = ctypes.CDLL("libcuda.so.1")
        self.module, self.function = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self.cuda.cuModuleLoadData(ctypes.byref(self.module), ptx.encode()), "cuModuleLoadData")
        self._check(self.cuda.cuModuleGetFunction(ctypes.byref(self.function), self.module, b"cluster_reduce"),
                    "cuModuleGetFunction")
        # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
        self._check(self.cuda.cuFuncSetAttribute(self.function, 8, self.smem), "cuFuncSetAttribute")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: CUDA driver error {status}")

    def __call__(self, tiles: int, src: torch.Tensor, part: torch.Tensor, y: torch.Tensor, mode: int) -> None:
        args = [ctypes.c_void_p(src.data_ptr()), ctypes.c_void_p(part.data_ptr()), ctypes.c_void_p(y.data_ptr()),
                ctypes.c_int(mode)]
        params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args])
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        self._check(self.cuda.cuLaunchKernel(self.function, tiles * self.slices, 1, 1, THREADS, 1, 1, self.smem, stream,
                                             params, None), "cuLaunchKernel")


def measure(kernel: Kernel, tiles: int, launches: int, rounds: int) -> dict:
    """Per variant: µs per launch (median of ``rounds`` graph replays of ``launches`` launches each) and the bf16
    result against torch's sum of the partials."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    S, tile = kernel.slices, kernel.tile
    src = torch.randn(tiles, S, tile, device="cuda", generator=gen)  # [tiles, S, tile] fp32 partials
    part = torch.empty_like(src)  # [tiles, S, tile] scratch
    y = torch.empty(tiles, tile, dtype=torch.bfloat16, device="cuda")  # [tiles, tile]
    expected = src.sum(1).to(torch.bfloat16)  # [tiles, tile]
    share = tile // S
    own = torch.cat([src[:, q, q * share:(q + 1) * share] for q in range(S)], 1).to(torch.bfloat16)  # [tiles, tile]
    out = {}
    for name, mode in VARIANTS.items():
        y.zero_()
        kernel(tiles, src, part, y, mode)
        torch.cuda.synchronize()
        want = expected if mode else own  # none: share q of the tile is slice q's own partial, unsummed
        error = (y.float() - want.float()).abs().max().item()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # launches on the graph's capture stream (torch's current one inside)
            for _ in range(launches):
                kernel(tiles, src, part, y, mode)
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(rounds):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(1000 * begin.elapsed_time(end) / launches)
        out[name] = {"us": statistics.median(times), "us_spread": [min(times), max(times)], "max_abs_error": error}
        print(f"{kernel.tile // X_ROWS}x{X_ROWS} tiles in {S} slices, {tiles} tiles, {name:>6}: {out[name]['us']:.2f} us per launch (spread {min(times):.2f}-"
              f"{max(times):.2f}), max |error| {error:.3g}", flush=True)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiles", default="16,32,64", help="tiles (clusters) per launch, comma-separated")
    p.add_argument("--launches", type=int, default=50, help="launches per graph replay")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--nvrtc", help="path of libnvrtc.so (found by default)")
    p.add_argument("--compile-only", action="store_true", help="compile to PTX and stop (no GPU needed)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    tiles = [int(t) for t in args.tiles.split(",") if t]
    if any(t < 1 for t in tiles):
        p.error(f"--tiles {args.tiles}: give positive counts")
    nvrtc = nvrtc_library(args.nvrtc)
    ptxs = {(rows, slices): compile_ptx(nvrtc, rows, slices) for rows, slices in CONFIGS}
    result = {"ptx_has": {f"{rows}x{X_ROWS}/{slices}": {op: op in ptx for op in (
        "mapa.shared::cluster", "ld.shared::cluster", "barrier.cluster.arrive", "%cluster_ctarank")}
        for (rows, slices), ptx in ptxs.items()}}
    if args.compile_only:
        return result
    from fastdllm.evaluation import torch_info

    result.update({"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "commit": os.environ.get("FASTDLLM_COMMIT"),
                   "command": "python experiments/cluster_reduce_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   "x_rows": X_ROWS, "threads": THREADS, "results": {}})
    for (rows, slices), ptx in ptxs.items():
        kernel = Kernel(ptx, rows, slices)
        result["results"][f"{rows}x{X_ROWS}/{slices}"] = {str(t): measure(kernel, t, args.launches, args.rounds)
                                                          for t in tiles}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
