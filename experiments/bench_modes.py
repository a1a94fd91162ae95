"""The modes ``bench_gpu.py`` runs each setting in: which of the model's fast paths each one turns on.

- ``plain``: every row through the whole network, eager (the reference the others are checked against);
- ``eager``: the optimised forward (last layer / final norm / LM head only on the rows read), eager;
- ``graphs``: the optimised forward replayed from CUDA graphs;
- ``fused``: ``graphs`` with the q/k/v and gate/up projections fused into one GEMM each
  (``fuse_projections``; on the CPU, where graphs do not apply, the fused eager forward);
- ``compiled-unfused``: the optimised forward with ``torch.compile``'d layer functions, replayed from CUDA
  graphs, projections separate (the ``compiled`` mode before the projections were fused);
- ``compiled``: ``compiled-unfused`` with fused projections (what ``use_compile()`` gives);
- ``split-kv``: ``compiled`` with the split-KV Triton attention for cached steps (``use_split_kv_attention()``).
- ``kernels``: ``split-kv`` with the few-row Triton GEMMs for products of at most 32 rows (``use_skinny_matmul()``);
- ``tuned``: ``kernels`` with each projection shape's GEMM backend chosen by timing (``model.tune_gemms`` at the
  row counts of the setting's forwards, after the warm-up decode; the choices are in the setting's ``gemm_plan``)
  among PyTorch's cuBLAS and cuBLASLt paths, the few-row kernel and cuBLASLt's ranked candidates (``lt0``, …);
- ``tuned-torch``: ``tuned`` without cuBLASLt's ranked candidates (the plan as it was before they were added);
- ``fp8``: ``kernels`` with fp8 copies of the wide weights for products of at most 32 rows (``use_fp8_weights()``;
  not exact: the weights are rounded to e4m3), normed inputs given to the kernel in fp16;
- ``fp8-bf16x``: ``fp8`` with every input in bf16 (``use_fp8_weights(fp16_inputs=False)``, the mode before round 17);
- ``fp8-tuned``: ``tuned`` with ``fp8``'s copies: the products fp8 does not serve run by the tuned plan;
- ``kernels-unfused-rope``: ``kernels`` with RoPE in the compiled layer function, as before ``use_rope_write``;
- ``kernels-unpacked``: ``kernels`` with the split-KV kernel's programs one query head each, as before
  ``pack_gqa`` (the same for LLaDA, whose heads are not grouped);
- ``kernels-round7``: ``kernels-unfused-rope`` with each layer's residual added right after it (an eager add, one
  launch, as the compiled function's add was before ``Transformer.defer_residual``): the kernels of round 7.

Every CUDA mode writes the KV store with the one-launch Triton copy (``fastdllm.kernels.kv_write``, exact); the
``kernels``, tuned and ``fp8`` modes rotate the queries and keys in that launch (``use_rope_write()``,
``fastdllm.kernels.rope_kv_write``).
"""

from __future__ import annotations

from fastdllm.kernels import gemm_plan

MODES = ("plain", "eager", "graphs", "fused", "compiled-unfused", "compiled", "split-kv", "kernels", "tuned", "tuned-torch",
         "fp8", "fp8-bf16x", "fp8-tuned", "kernels-unfused-rope", "kernels-round7", "kernels-unpacked")
TUNED_MODES = {"tuned": None, "tuned-torch": gemm_plan.BACKENDS, "fp8-tuned": None}  # mode -> tune_gemms' backends (None: all)
FP8_MODES = ("fp8", "fp8-bf16x", "fp8-tuned")
ROPE_WRITE_MODES = tuple(dict.fromkeys(("kernels", *TUNED_MODES, *FP8_MODES, "kernels-unpacked")))  # RoPE applied in the KV write (use_rope_write)
KERNEL_MODES = (*ROPE_WRITE_MODES, "kernels-unfused-rope", "kernels-round7")
CUDA_MODES = ("graphs", "compiled-unfused", "compiled", "split-kv", *KERNEL_MODES)  # dropped on the CPU
GRAPHED_MODES = ("graphs", "fused", "compiled-unfused", "compiled", "split-kv", *KERNEL_MODES)
COMPILED_MODES = ("compiled-unfused", "compiled", "split-kv", *KERNEL_MODES)
FUSED_MODES = ("fused", "compiled", "split-kv", *KERNEL_MODES)


def set_mode(model, mode: str) -> None:
    """Turn ``model``'s fast paths on or off as ``mode`` names them (each switch is idempotent)."""
    model.net.fast = mode != "plain"
    model.use_compile(mode in COMPILED_MODES, fuse=False)
    model.fuse_projections(mode in FUSED_MODES)  # every other mode runs the separate projections
    model.use_split_kv_attention(mode in ("split-kv", *KERNEL_MODES), pack_gqa=mode != "kernels-unpacked")
    model.use_skinny_matmul(mode in KERNEL_MODES)
    model.use_tuned_gemms(mode in TUNED_MODES)
    model.use_fp8_weights(mode in FP8_MODES, fp16_inputs=mode != "fp8-bf16x")
    model.use_rope_write(mode in ROPE_WRITE_MODES)
    model.net.defer_residual = mode != "kernels-round7"
    model.use_cuda_graphs(mode in GRAPHED_MODES)
