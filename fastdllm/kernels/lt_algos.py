"""cuBLASLt's ranked algorithm candidates for one GEMM shape, each runnable by its rank (ctypes, CUDA only).

PyTorch asks cuBLASLt's heuristic for one algorithm per problem shape and runs it. For the products of a
prefix-cache window (96-256 rows against an 8B model's weights, near the GPU's ridge point) that first
choice can be far from the floor: on an H200, LLaDA-8B's down projection at 192 rows took 41.1 µs through
cuBLASLt against a 24.2 µs floor (``experiments/results/speed/round6_dev/h200_probe/cublas_llada.json``).
The heuristic ranks more candidates than it is asked for (other tile shapes, split-K counts, stage counts);
``LtGemm`` asks for them for one (rows, N, K, dtype, bias) shape — once per workspace cap, as the ranking
changes with the workspace a candidate may use; the union, first ranking first, at most ``max_algos`` — and runs
``F.linear(x, weight, bias)`` with the candidate of a given rank, so a caller can time them all.
``add_configurations`` appends the configurations beyond that ranking (every tile, split-K count, reduction scheme,
cluster shape and custom option ``cublasLtMatmulAlgoCheck`` accepts for the shape); on an H200, timed alone, the best
of them took at most 0.32 ms off a prefix window's products (``experiments/results/speed/round14_dev/``), unchecked
inside the windows, so ``gemm_plan`` offers only the ranked candidates and the sweep
(``experiments/lt_algo_sweep.py --enumerate``) the rest.

Bound through ctypes to the ``libcublasLt`` that PyTorch has loaded (no compilation). Every candidate
accumulates in fp32, in its own summation order; a split-K candidate adds its partial sums in fp32 or, with
the in-place and output-type reduction schemes (``describe(rank)["reduction_scheme"]`` 1 or 4), in the output
dtype, rounding more than once (as cuBLAS's own split-K kernels behind ``F.linear`` may).
Layout: PyTorch's row-major ``y[M, N] = x[M, K] · weight[N, K]ᵀ`` is cuBLASLt's column-major
``D[N, M] = op(A)[N, K] · B[K, M]`` with A = weight (transposed), B = x.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import re
from collections.abc import Sequence

import torch

# enum values of cublasLt.h, cublas_api.h and library_types.h (``check_header`` compares them with the headers)
ENUMS = {"CUBLAS_COMPUTE_32F": 68, "CUDA_R_32F": 0, "CUDA_R_16F": 2, "CUDA_R_16BF": 14,
         "CUBLASLT_MATMUL_DESC_TRANSA": 3, "CUBLASLT_MATMUL_DESC_TRANSB": 4, "CUBLASLT_MATMUL_DESC_EPILOGUE": 7,
         "CUBLASLT_MATMUL_DESC_BIAS_POINTER": 8, "CUBLASLT_EPILOGUE_BIAS": 4, "CUBLASLT_EPILOGUE_DEFAULT": 1,
         "CUBLAS_OP_N": 0, "CUBLAS_OP_T": 1, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES": 1,
         "CUBLASLT_ALGO_CONFIG_ID": 0, "CUBLASLT_ALGO_CONFIG_TILE_ID": 1, "CUBLASLT_ALGO_CONFIG_SPLITK_NUM": 2,
         "CUBLASLT_ALGO_CONFIG_STAGES_ID": 6, "CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME": 3,
         "CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING": 4, "CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION": 5,
         "CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID": 7, "CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID": 8,
         "CUBLASLT_ALGO_CAP_SPLITK_SUPPORT": 0, "CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK": 1,
         "CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT": 2, "CUBLASLT_ALGO_CAP_TILE_IDS": 6, "CUBLASLT_ALGO_CAP_STAGES_IDS": 13,
         "CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX": 7}
HEADERS = ("cublasLt.h", "cublas_api.h", "library_types.h")
NOT_SUPPORTED = 15  # CUBLAS_STATUS_NOT_SUPPORTED: the heuristic has no candidate under these preferences
MAX_ALGOS = 16  # the most candidates the heuristic gives a shape (the union over the workspace caps)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)  # the split-K counts ``add_configurations`` tries
CONFIG_TYPES = {"ID": ctypes.c_int32, "TILE_ID": ctypes.c_uint32, "SPLITK_NUM": ctypes.c_int32,  # as cublasLt.h types
                "STAGES_ID": ctypes.c_uint32, "REDUCTION_SCHEME": ctypes.c_uint32, "CTA_SWIZZLING": ctypes.c_uint32,  # them
                "CUSTOM_OPTION": ctypes.c_uint32, "INNER_SHAPE_ID": ctypes.c_uint16, "CLUSTER_SHAPE_ID": ctypes.c_uint16}
REDUCTION_SCHEMES = (1, 2, 4)  # in place, in the compute type (fp32), in the output type: each split-K count tries those
# the algorithm supports
_DTYPES = {torch.bfloat16: "CUDA_R_16BF", torch.float16: "CUDA_R_16F"}
WORKSPACE_BYTES = 32 * 1024 * 1024  # the most workspace a candidate may use (split-K partials)
WORKSPACE_CAPS = (WORKSPACE_BYTES, 4 * 1024 * 1024, 1024 * 1024, 0)  # the heuristic is asked once per cap
ALIGNMENT = 256  # cuBLASLt's heuristic assumes 256-byte aligned operands unless told otherwise


class _HeuristicResult(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t: the opaque 64-byte algorithm, its workspace, status and waves."""
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves_count", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


_LIB = None
_HANDLES: dict[int, ctypes.c_void_p] = {}
_WORKSPACES: dict[int, torch.Tensor] = {}


def library_path() -> str | None:
    """The ``libcublasLt`` this process has loaded (PyTorch loads it with CUDA), else one in site-packages."""
    torch.cuda.init()
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libcublasLt.so" in line:
                return line.split()[-1]
    roots = {os.path.dirname(os.path.dirname(torch.__file__))}
    found = sorted(p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "**", "libcublasLt.so*"), recursive=True))
    return found[-1] if found else None


def header_paths(library: str) -> list[str]:
    """The ``HEADERS`` shipped next to ``library`` (the pip wheels' ``include/``), else a CUDA toolkit's."""
    roots = [os.path.join(os.path.dirname(os.path.dirname(library)), "include")]
    roots += sorted(glob.glob("/usr/local/cuda*/include"))
    for root in roots:
        found = [os.path.join(root, h) for h in HEADERS if os.path.exists(os.path.join(root, h))]
        if found:
            return found
    return []


def check_header(paths: str | list[str]) -> dict[str, tuple[int, int | None]]:
    """``ENUMS`` entries the headers at ``paths`` define otherwise: name -> (ours, theirs); theirs is None
    for a name none of them defines (with ``cublasLt.h`` alone, the names of the other two headers)."""
    text = "\n".join(open(p).read() for p in ([paths] if isinstance(paths, str) else paths))
    wrong = {}
    for name, value in ENUMS.items():
        match = re.search(rf"\b{name}\s*=\s*(\d+)", text)
        if match is None or int(match.group(1)) != value:
            wrong[name] = (value, None if match is None else int(match.group(1)))
    return wrong


def _lib():
    global _LIB
    if _LIB is None:
        path = library_path()
        if path is None:
            raise RuntimeError("lt_algos: no libcublasLt found (a CUDA build of PyTorch loads one)")
        headers = header_paths(path)
        wrong = {k: v for k, v in check_header(headers).items() if v[1] is not None} if headers else {}
        if wrong:  # a cuBLAS whose enums moved: refuse rather than pass it wrong attribute ids
            raise RuntimeError(f"lt_algos: {headers} give other values than lt_algos.ENUMS (ours, theirs): {wrong}")
        _LIB = ctypes.CDLL(path)
    return _LIB


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"lt_algos: {what} returned cuBLAS status {status}")


def _handle(device: int) -> ctypes.c_void_p:
    if device not in _HANDLES:
        with torch.cuda.device(device):
            handle = ctypes.c_void_p()
            _check(_lib().cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")
            _HANDLES[device] = handle
            _WORKSPACES[device] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=f"cuda:{device}")
    return _HANDLES[device]


def _set(setter, obj, attribute: str, value) -> None:
    _check(setter(obj, ENUMS[attribute], ctypes.byref(value), ctypes.sizeof(value)), f"set {attribute}")


def _layout(dtype: str, rows: int, cols: int, ld: int) -> ctypes.c_void_p:
    layout = ctypes.c_void_p()
    _check(_lib().cublasLtMatrixLayoutCreate(ctypes.byref(layout), ENUMS[dtype], ctypes.c_uint64(rows),
                                             ctypes.c_uint64(cols), ctypes.c_int64(ld)), "cublasLtMatrixLayoutCreate")
    return layout


def _cap_int(algo, name: str) -> int:
    """An int32 capability of an initialised algorithm (``CUBLASLT_ALGO_CAP_<name>``); 0 where it has none."""
    value, written = ctypes.c_int32(0), ctypes.c_size_t(0)
    status = _lib().cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), ENUMS[f"CUBLASLT_ALGO_CAP_{name}"],
                                                      ctypes.byref(value), ctypes.sizeof(value), ctypes.byref(written))
    return int(value.value) if status == 0 else 0


def _cap_list(algo, name: str) -> list[int]:
    """A uint32-array capability (tile or stage ids): its size asked first, as cublasLt.h describes."""
    lib, attr, size = _lib(), ENUMS[f"CUBLASLT_ALGO_CAP_{name}"], ctypes.c_size_t(0)
    if lib.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), attr, None, 0, ctypes.byref(size)) != 0 or size.value < 4:
        return []
    values = (ctypes.c_uint32 * (size.value // 4))()
    _check(lib.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), attr, values, ctypes.sizeof(values), ctypes.byref(size)),
           f"cap {name}")
    return list(values)


def _config(algo) -> dict[str, int | None]:
    """Every ``CONFIG_TYPES`` attribute of a configured algorithm, lower-case names; None where it has none."""
    info = {}
    for key, kind in CONFIG_TYPES.items():
        value, written = kind(0), ctypes.c_size_t(0)
        status = _lib().cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), ENUMS[f"CUBLASLT_ALGO_CONFIG_{key}"],
                                                             ctypes.byref(value), ctypes.sizeof(value), ctypes.byref(written))
        info[key.lower()] = int(value.value) if status == 0 else None
    return info


class LtGemm:
    """``F.linear`` for one shape — ``rows`` × ``K`` inputs, an ``[N, K]`` weight, with or without a bias — on
    one CUDA device, through any of cuBLASLt's ranked candidates (``describe(rank)``: its configuration).
    Not for concurrent calls from several threads: the bias pointer is an attribute of the one descriptor,
    set before each call (inside a CUDA-graph capture, each captured call keeps the pointer it was given); and
    every candidate on a device shares one split-K workspace, so calls on concurrent streams could race."""

    def __init__(self, rows: int, N: int, K: int, dtype: torch.dtype, bias: bool, device: int | None = None,
                 max_algos: int = MAX_ALGOS):
        if dtype not in _DTYPES:
            raise ValueError(f"LtGemm: dtype {dtype} is not one of {sorted(map(str, _DTYPES))}")
        if min(rows, N, K) <= 0 or not 0 < max_algos <= MAX_ALGOS:
            raise ValueError(f"LtGemm: rows, N, K must be positive and max_algos in 1..{MAX_ALGOS}, got {rows}, {N}, "
                             f"{K}, {max_algos}")
        self.rows, self.N, self.K, self.dtype, self.bias = rows, N, K, dtype, bias
        self.device = torch.cuda.current_device() if device is None else device
        with torch.cuda.device(self.device):  # the handle, descriptors and ranking belong to this GPU
            self._setup(rows, N, K, bias, max_algos)
        self._alpha, self._beta = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def _setup(self, rows: int, N: int, K: int, bias: bool, max_algos: int) -> None:
        lib, name = _lib(), _DTYPES[self.dtype]
        self._handle = _handle(self.device)
        self._desc = ctypes.c_void_p()
        _check(lib.cublasLtMatmulDescCreate(ctypes.byref(self._desc), ENUMS["CUBLAS_COMPUTE_32F"], ENUMS["CUDA_R_32F"]),
               "cublasLtMatmulDescCreate")
        _set(lib.cublasLtMatmulDescSetAttribute, self._desc, "CUBLASLT_MATMUL_DESC_TRANSA", ctypes.c_int32(ENUMS["CUBLAS_OP_T"]))
        _set(lib.cublasLtMatmulDescSetAttribute, self._desc, "CUBLASLT_MATMUL_DESC_TRANSB", ctypes.c_int32(ENUMS["CUBLAS_OP_N"]))
        epilogue = "CUBLASLT_EPILOGUE_BIAS" if bias else "CUBLASLT_EPILOGUE_DEFAULT"
        _set(lib.cublasLtMatmulDescSetAttribute, self._desc, "CUBLASLT_MATMUL_DESC_EPILOGUE", ctypes.c_int32(ENUMS[epilogue]))
        self._a = _layout(name, K, N, K)  # weight [N, K] row-major = K × N column-major, transposed
        self._b = _layout(name, K, rows, K)  # x [rows, K] row-major = K × rows column-major
        self._d = _layout(name, N, rows, N)  # y [rows, N] row-major = N × rows column-major
        self._algos: list[_HeuristicResult] = []
        seen: set[bytes] = set()
        for cap in WORKSPACE_CAPS:  # each cap gets its own ranking (split-K needs workspace): the union, deduplicated
            for result in self._heuristic(cap, max_algos):
                if bytes(result.algo) not in seen and len(self._algos) < max_algos:
                    seen.add(bytes(result.algo))
                    self._algos.append(result)

    def _heuristic(self, workspace_cap: int, count: int) -> list[_HeuristicResult]:
        """cuBLASLt's ranked candidates (at most ``count``) that need at most ``workspace_cap`` bytes."""
        lib = _lib()
        pref = ctypes.c_void_p()
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "cublasLtMatmulPreferenceCreate")
        try:
            _set(lib.cublasLtMatmulPreferenceSetAttribute, pref, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES",
                 ctypes.c_uint64(workspace_cap))
            results = (_HeuristicResult * count)()
            found = ctypes.c_int(0)
            status = lib.cublasLtMatmulAlgoGetHeuristic(self._handle, self._desc, self._a, self._b, self._d, self._d, pref,
                                                        count, results, ctypes.byref(found))
            if status == NOT_SUPPORTED:
                return []
            _check(status, "cublasLtMatmulAlgoGetHeuristic")
        finally:
            lib.cublasLtMatmulPreferenceDestroy(pref)
        return [results[i] for i in range(found.value) if results[i].state == 0]

    def add_configurations(self, splits: Sequence[int] = SPLITS, *, ids: Sequence[int] | None = None,
                           stages: Sequence[int] | None = None, clusters: Sequence[int] = (0,),
                           customs: Sequence[int] = (0,), max_checks: int = 200_000) -> dict:
        """Append the configurations cuBLASLt accepts beyond its heuristic's ranking: for each algorithm id
        (``ids``, default every id it has for this dtype), every tile the algorithm lists, each stage id
        (``stages``, default every one it lists), each split-K count of ``splits`` (where the algorithm can split
        K) with each reduction scheme it supports, and each thread-block cluster shape id of ``clusters``
        (``CUBLASLT_CLUSTER_SHAPE_*``, 0: automatic) and custom option of ``customs`` (those up to the algorithm's
        ``CUSTOM_OPTION_MAX``); each configuration checked by ``cublasLtMatmulAlgoCheck``
        for this shape (at most ``max_checks`` checks) and kept when it passes within ``WORKSPACE_BYTES`` of
        workspace and is not a candidate already (compared by every attribute ``describe`` reads back). Swizzling
        and inner shapes stay at their defaults.
        New candidates take the ranks after the heuristic's (``len(self)`` grows). Returns ``{"ids", "checked",
        "added"}``."""
        if any(int(s) < 1 for s in splits) or max_checks < 1:
            raise ValueError(f"add_configurations: split-K counts must be >= 1 and max_checks positive, got {tuple(splits)}, "
                             f"{max_checks}")
        for name, values, top in (("ids", ids or (), 2**31 - 1), ("stages", stages or (), 2**32 - 1), ("clusters", clusters, 2**16 - 1),
                                  ("customs", customs, 2**32 - 1)):
            if any(not 0 <= int(v) <= top for v in values):  # ctypes would wrap them silently
                raise ValueError(f"add_configurations: {name} must lie in 0..{top} (the attribute's C type), got {tuple(values)}")
        with torch.cuda.device(self.device):
            return self._add_configurations([int(s) for s in splits], ids, stages, [int(c) for c in clusters],
                                            [int(c) for c in customs], max_checks)

    def _add_configurations(self, splits, ids, stages, clusters, customs, max_checks) -> dict:
        lib, dtype = _lib(), ENUMS[_DTYPES[self.dtype]]
        types = (ENUMS["CUBLAS_COMPUTE_32F"], ENUMS["CUDA_R_32F"], dtype, dtype, dtype, dtype)
        if ids is None:
            found, count = (ctypes.c_int * 1024)(), ctypes.c_int(0)
            _check(lib.cublasLtMatmulAlgoGetIds(self._handle, *types, 1024, found, ctypes.byref(count)),
                   "cublasLtMatmulAlgoGetIds")
            ids = list(found[:count.value])
        seen = {tuple(_config(result.algo).values()) for result in self._algos}  # the bytes alone let repeats through
        checked = added = 0
        for algo_id in ids:
            base = (ctypes.c_uint64 * 8)()
            if lib.cublasLtMatmulAlgoInit(self._handle, *types, int(algo_id), ctypes.byref(base)) != 0:
                continue  # not for these types on this device
            split_ok = _cap_int(base, "SPLITK_SUPPORT") != 0
            schemes = [r for r in REDUCTION_SCHEMES if _cap_int(base, "REDUCTION_SCHEME_MASK") & r]
            options = itertools.product(_cap_list(base, "TILE_IDS") or [0],
                                        stages if stages is not None else (_cap_list(base, "STAGES_IDS") or [0]),
                                        [(s, r) for s in (splits if split_ok else [1]) for r in ((0,) if s == 1 else schemes)],
                                        clusters, [c for c in customs if c <= _cap_int(base, "CUSTOM_OPTION_MAX")])
            for tile, stage, (split, scheme), cluster, custom in options:
                if checked >= max_checks:
                    return {"ids": list(ids), "checked": checked, "added": added}
                algo = (ctypes.c_uint64 * 8)(*base)
                for name, value in (("TILE_ID", ctypes.c_uint32(tile)), ("STAGES_ID", ctypes.c_uint32(stage)),
                                    ("SPLITK_NUM", ctypes.c_int32(split)), ("REDUCTION_SCHEME", ctypes.c_uint32(scheme)),
                                    ("CLUSTER_SHAPE_ID", ctypes.c_uint16(cluster)), ("CUSTOM_OPTION", ctypes.c_uint32(custom))):
                    _check(lib.cublasLtMatmulAlgoConfigSetAttribute(ctypes.byref(algo), ENUMS[f"CUBLASLT_ALGO_CONFIG_{name}"],
                                                                    ctypes.byref(value), ctypes.sizeof(value)), f"set {name}")
                result = _HeuristicResult()
                status = lib.cublasLtMatmulAlgoCheck(self._handle, self._desc, self._a, self._b, self._d, self._d,
                                                     ctypes.byref(algo), ctypes.byref(result))
                checked += 1
                key = tuple(_config(algo).values()) if status == 0 else None
                if status == 0 and result.workspace_size <= WORKSPACE_BYTES and key not in seen:
                    result.algo = algo
                    seen.add(key)
                    self._algos.append(result)
                    added += 1
        return {"ids": list(ids), "checked": checked, "added": added}

    def __len__(self) -> int:
        return len(self._algos)

    def describe(self, rank: int) -> dict:
        """The candidate's configuration as cuBLASLt reports it (algorithm id, tile, split-K, stages, reduction
        scheme, swizzling, custom option, inner and cluster shape; None where this cuBLAS has no such attribute) and
        its workspace and estimated waves."""
        algo = self._algos[rank]
        return {"workspace_bytes": int(algo.workspace_size), "waves": round(float(algo.waves_count), 3), **_config(algo.algo)}

    def fits(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
        """Whether the operands are the shape, dtype and device this object was made for, contiguous and 256-byte
        aligned (a bias: ``[N]``)."""
        tensors = [x, weight] + ([bias] if bias is not None else [])
        return (x.is_cuda and x.device.index == self.device and (bias is not None) == self.bias
                and all(t.device == x.device and t.dtype == self.dtype and t.is_contiguous()
                        and t.data_ptr() % ALIGNMENT == 0 for t in tensors)
                and x.numel() == self.rows * self.K and x.shape[-1] == self.K and tuple(weight.shape) == (self.N, self.K)
                and (bias is None or tuple(bias.shape) == (self.N,)))

    def __call__(self, rank: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 fitted: bool = False) -> torch.Tensor:
        """``F.linear(x, weight, bias)`` by the candidate of ``rank`` (0: the heuristic's first choice);
        ``fitted``: the caller has checked ``fits`` (the plan's hot path), so it is not checked again."""
        if not 0 <= rank < len(self._algos):
            raise IndexError(f"LtGemm: rank {rank} out of the {len(self._algos)} candidates")
        if not fitted and not self.fits(x, weight, bias):
            raise ValueError(f"LtGemm: operands {tuple(x.shape)} {x.dtype} × {tuple(weight.shape)} (bias: {bias is not None}) "
                             f"are not the contiguous, {ALIGNMENT}-byte aligned {self.rows} × {self.K} · [{self.N}, {self.K}] "
                             f"{self.dtype} product this object serves")
        with torch.cuda.device(self.device):
            return self._matmul(rank, x, weight, bias)

    def _matmul(self, rank: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        lib = _lib()
        y = torch.empty(*x.shape[:-1], self.N, dtype=self.dtype, device=x.device)  # [..., N]
        if bias is not None:
            _set(lib.cublasLtMatmulDescSetAttribute, self._desc, "CUBLASLT_MATMUL_DESC_BIAS_POINTER",
                 ctypes.c_void_p(bias.data_ptr()))
        workspace = _WORKSPACES[self.device]
        stream = ctypes.c_void_p(torch.cuda.current_stream(x.device).cuda_stream)
        _check(lib.cublasLtMatmul(self._handle, self._desc, ctypes.byref(self._alpha), ctypes.c_void_p(weight.data_ptr()),
                                  self._a, ctypes.c_void_p(x.data_ptr()), self._b, ctypes.byref(self._beta),
                                  ctypes.c_void_p(y.data_ptr()), self._d, ctypes.c_void_p(y.data_ptr()), self._d,
                                  ctypes.byref(self._algos[rank].algo), ctypes.c_void_p(workspace.data_ptr()),
                                  ctypes.c_size_t(WORKSPACE_BYTES), stream), "cublasLtMatmul")
        return y
