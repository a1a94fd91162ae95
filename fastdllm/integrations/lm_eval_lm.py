"""The lm-eval model class: Fast-dLLM decoding (arXiv 2505.22618) behind lm-eval's ``generate_until``.

Imports lm-eval at the top: reach it through ``fastdllm.lm_eval_model.register()``.

``model_args``: ``pretrained`` (folder or Hub id; default the shipped tiny model), ``cache``,
``unmask``, any field of the chosen policies (``threshold=0.9``, ``factor=1.0``; or dotted,
``unmask.threshold=0.9``), ``gen_length``, ``block_length``, ``dtype``, ``seed``, ``stop_at_eos``,
``max_steps_per_block``. Without ``gen_length`` a request's ``max_gen_toks`` is rounded up to a
multiple of ``block_length`` (the canvas is decoded in whole blocks; the answer is not trimmed back).
"""

from __future__ import annotations

import atexit
import json
import math
import sys
import time
from typing import Any, ClassVar

import torch
from lm_eval.api.model import LM
from lm_eval.models.utils import normalize_gen_kwargs

from fastdllm.core.config import decode_config
from fastdllm.core.decoder import DiffusionDecoder
from fastdllm.core.model_api import left_pad
from fastdllm.core.policy import cache_policies, unmask_policies

_DECODE_KEYS = ("gen_length", "block_length", "seed", "stop_at_eos", "max_steps_per_block")
_OWN_KEYS = ("pretrained", "cache", "unmask", "dtype", "device", "batch_size", "max_batch_size",
             "trust_remote_code", *_DECODE_KEYS)
AUTO_BATCH = 16  # batch size used for batch_size=auto (no memory probing)


def _policy_specs(cache: Any, unmask: Any, extra: dict[str, Any]) -> tuple[dict, dict]:
    """Route ``threshold=0.9``-style model_args to the policy whose config has that field."""
    specs = {"cache": {"name": cache} if isinstance(cache, str) else dict(cache),
             "unmask": {"name": unmask} if isinstance(unmask, str) else dict(unmask)}
    fields = {kind: set(reg.get(specs[kind]["name"]).Config.model_fields)
              for kind, reg in (("cache", cache_policies), ("unmask", unmask_policies))}
    for key, value in extra.items():
        kind, _, field = key.rpartition(".")
        owners = [kind] if kind in specs else [k for k in specs if field in fields[k]]
        if len(owners) != 1 or field not in fields[owners[0]]:
            valid = sorted({*_OWN_KEYS, *(f"{k}.{f}" for k in specs for f in fields[k]),
                            *fields["cache"], *fields["unmask"]})
            raise ValueError(f"fastdllm lm-eval model: unknown model_args key {key!r} for cache "
                             f"{specs['cache']['name']!r} and unmask {specs['unmask']['name']!r}; valid keys: "
                             f"{', '.join(valid)}")
        specs[owners[0]][field] = value
    return specs["cache"], specs["unmask"]


def _destroy_process_group() -> None:
    """At exit, the process group ``_setup_distributed`` made, while the interpreter is still whole."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def cut_at_stops(text: str, stops: list[str]) -> str:
    """``text`` up to the earliest occurrence of any non-empty stop sequence."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


class FastDLLMEvalModel(LM):
    """Masked diffusion LM decoded with a Fast-dLLM cache policy and unmask policy (generation tasks only)."""

    runs: ClassVar[list["FastDLLMEvalModel"]] = []  # instances of this process, for fastdllm_decode_stats.json

    def __init__(self, pretrained: str | None = None, cache: Any = "dual", unmask: Any = "threshold",
                 dtype: str | None = None, device: str | None = None, batch_size: int | str = 1,
                 max_batch_size: int | None = None, trust_remote_code: bool = False, gen_length: int | None = None,
                 block_length: int | None = None, seed: int | None = None, stop_at_eos: bool = False,
                 max_steps_per_block: int | None = None, **policy_options: Any) -> None:
        super().__init__()
        import fastdllm
        from fastdllm.assets import default_decode_options, tiny_model_path

        cache_spec, unmask_spec = _policy_specs(cache, unmask, policy_options)  # bad keys fail before loading
        self.batch_size = self._batch_size(batch_size, max_batch_size)
        self._setup_distributed()
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            print(f"fastdllm lm-eval model: device {device!r} requested but CUDA is unavailable; using cpu",
                  file=sys.stderr)
            device = "cpu"
        if device is not None and self._world_size > 1 and str(device).startswith("cuda"):
            import os  # one GPU per process: torchrun's LOCAL_RANK picks it

            device = f"cuda:{int(os.environ.get('LOCAL_RANK', self._rank)) % torch.cuda.device_count()}"
        path = pretrained or str(tiny_model_path())
        stored = default_decode_options(path)  # the folder's fastdllm.json (no weights read)
        self.block_length = int(block_length or stored.get("block_length", 32))
        self.gen_length = None if gen_length is None else int(gen_length)
        self.decode_options = {"cache": cache_spec, "unmask": unmask_spec, "block_length": self.block_length,
                               "seed": seed, "stop_at_eos": bool(stop_at_eos),
                               "max_steps_per_block": max_steps_per_block}
        decode_config(gen_length=self.gen_length or self.block_length, **self.decode_options)  # before loading
        self.model = fastdllm.load_model(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        self.pretrained = path
        self._decoders: dict[tuple, DiffusionDecoder] = {}
        self._noted: set[tuple] = set()
        self._local_rows: list[dict[str, Any]] = []  # this rank's sequences
        self._local_wall = 0.0
        self._rows: list[dict[str, Any]] = []  # every rank's (after each generate_until)
        self._wall = 0.0  # the slowest rank's decode time
        FastDLLMEvalModel.runs.append(self)

    # ---- setup --------------------------------------------------------------------------------
    @staticmethod
    def _batch_size(batch_size: int | str, max_batch_size: int | None) -> int:
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            size = max_batch_size or AUTO_BATCH
            print(f"fastdllm lm-eval model: batch_size={batch_size} does not probe memory; using {size} "
                  "(set --batch_size N or --max_batch_size N)", file=sys.stderr)
            return int(size)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        return int(batch_size)

    def _setup_distributed(self) -> None:
        """Under torchrun, one rank per process: lm-eval then hands each rank its share of the requests."""
        import os

        dist = torch.distributed
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            # lm-eval never destroys the group; left to interpreter teardown, gloo's worker threads can abort
            # the process ("terminate called without an active exception", SIGABRT) after a finished run
            atexit.register(_destroy_process_group)
        if dist.is_available() and dist.is_initialized():
            self._rank, self._world_size = dist.get_rank(), dist.get_world_size()

    @property
    def device(self):
        return self.model.device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._world_size == 1:
            return tensor
        parts = [torch.zeros_like(tensor) for _ in range(self._world_size)]
        torch.distributed.all_gather(parts, tensor)
        return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

    def gather_object(self, obj, dst: int = 0):
        if self._world_size == 1:
            return [obj]
        out = [None] * self._world_size if self._rank == dst else None
        torch.distributed.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        if self._world_size > 1:
            torch.distributed.barrier()

    # ---- chat template (lm-eval's --apply_chat_template) ----------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.model._need_tokenizer(), "chat_template", None)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        tok = self.model._need_tokenizer()
        if not getattr(tok, "chat_template", None):
            raise RuntimeError(f"{self.pretrained}: the tokenizer has no chat template; drop --apply_chat_template")
        return tok.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                       continue_final_message=not add_generation_prompt)

    # ---- requests -------------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._no_scores(requests, "loglikelihood")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        self._no_scores(requests, "loglikelihood_rolling")

    @staticmethod
    def _no_scores(requests, kind: str):
        tasks = sorted({str(r.task_name) for r in requests if getattr(r, "task_name", None)})
        raise NotImplementedError(
            f"the fastdllm model serves only generation tasks (output_type: generate_until); task(s) "
            f"{', '.join(tasks) or '?'} ask for {kind} (multiple-choice or perplexity scoring), which a diffusion "
            "decoder does not compute. Use generation tasks such as gsm8k, minerva_math, humaneval, mbpp.")

    def _gen_length(self, max_gen_toks: int) -> int:
        if self.gen_length is not None:
            length, why = self.gen_length, f"from model_args (the task asks max_gen_toks={max_gen_toks})"
        else:
            length = math.ceil(max_gen_toks / self.block_length) * self.block_length
            why = (f"the task's max_gen_toks={max_gen_toks} rounded up to a multiple of block_length="
                   f"{self.block_length}")
        if ("gen", length, max_gen_toks) not in self._noted and self._rank == 0:
            self._noted.add(("gen", length, max_gen_toks))
            print(f"fastdllm lm-eval model: gen_length={length}, {why}", file=sys.stderr)
        return length

    def _decoder(self, gen_length: int, temperature: float) -> DiffusionDecoder:
        key = (gen_length, temperature)
        if key not in self._decoders:
            self._decoders[key] = DiffusionDecoder(self.model, gen_length=gen_length, temperature=temperature,
                                                   **self.decode_options)
        return self._decoders[key]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm.auto import tqdm

        tok = self.model._need_tokenizer()
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):  # one decoder setting per distinct gen_kwargs
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self._rank != 0, desc="fastdllm generate_until")
        for members in groups.values():
            kwargs = normalize_gen_kwargs(dict(requests[members[0]].args[1]), 256)
            stops = kwargs["until"] if isinstance(kwargs["until"], list) else [kwargs["until"]]
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            decoder = self._decoder(self._gen_length(int(kwargs["max_gen_toks"])), temperature)
            ids = {i: tok(requests[i].args[0], add_special_tokens=False)["input_ids"] for i in members}
            order = sorted(members, key=lambda i: -len(ids[i]))  # longest first: a too-long prompt fails at once
            for b in range(0, len(order), self.batch_size):
                batch = order[b:b + self.batch_size]
                prompt, mask = left_pad([ids[i] for i in batch], None, self.model.pad_token_id, self.model.device)
                result = decoder.generate(prompt, mask)
                self._record(result)
                for i, text in zip(batch, self.model.decode(result.generated)):
                    outputs[i] = cut_at_stops(text, stops)
                    self.cache_hook.add_partial("generate_until", requests[i].args, outputs[i])
                bar.update(len(batch))
        bar.close()
        self._merge_ranks()
        if self._rank == 0:
            print("fastdllm lm-eval model: " + self.format_stats(), file=sys.stderr)
        return outputs  # type: ignore[return-value]

    # ---- statistics -----------------------------------------------------------------------------
    def _merge_ranks(self) -> None:
        """Every rank's sequences (collective: all ranks run generate_until; get_model_info runs on rank 0 only).
        Under torchrun lm-eval pads the shorter ranks with repeated requests: those count too."""
        if self._world_size == 1:
            self._rows, self._wall = list(self._local_rows), self._local_wall
            return
        parts: list = [None] * self._world_size
        torch.distributed.all_gather_object(parts, (self._local_rows, self._local_wall))
        self._rows = [row for rows, _ in parts for row in rows]
        self._wall = max(wall for _, wall in parts)

    def _record(self, result) -> None:
        self._local_wall += result.wall_time_s
        stats = zip(result.nfe_per_row.tolist(), result.tokens_per_forward.tolist(),
                    result.answer_tokens_per_forward.tolist(), result.first_end.tolist())
        for nfe, tpf, tpf_answer, answer_tokens in stats:
            self._local_rows.append({"nfe": nfe, "tpf_canvas": tpf, "tpf_answer": tpf_answer,
                               "answer_tokens": answer_tokens, "gen_length": result.gen_length})

    def decode_stats(self) -> dict[str, Any]:
        """NFE, TPF and tokens/s over every sequence decoded, all ranks (as ``fastdllm.evaluation``); tokens/s
        over the slowest rank's decode time."""
        from fastdllm.evaluation import torch_info

        rows, wall = self._rows, max(self._wall, 1e-9)

        def mean(key: str) -> float | None:
            return sum(r[key] for r in rows) / len(rows) if rows else None

        lengths = sorted({r["gen_length"] for r in rows})
        gen_length = self.gen_length or (lengths[0] if len(lengths) == 1 else lengths or None)
        return {"pretrained": str(self.pretrained), "setting": {**self.decode_options, "gen_length": gen_length},
                "n": len(rows), "nfe_mean": mean("nfe"), "tpf_canvas": mean("tpf_canvas"),
                "tpf_answer": mean("tpf_answer"), "answer_tokens_mean": mean("answer_tokens"),
                "wall_time_s": self._wall, "tokens_per_s_canvas": sum(r["gen_length"] for r in rows) / wall,
                "tokens_per_s_useful": sum(r["answer_tokens"] for r in rows) / wall,
                "rank": self._rank, "world_size": self._world_size, "env": torch_info()}

    def format_stats(self) -> str:
        s = self.decode_stats()
        if not s["n"]:
            return "no sequences decoded"
        return (f"{s['n']} sequences, NFE {s['nfe_mean']:.1f}/sequence, TPF {s['tpf_canvas']:.2f} (answer "
                f"{s['tpf_answer']:.2f}), {s['tokens_per_s_canvas']:.0f} canvas tokens/s, "
                f"{s['tokens_per_s_useful']:.0f} answer tokens/s, decode time {s['wall_time_s']:.1f}s")

    def get_model_info(self) -> dict[str, Any]:
        """Added by lm-eval to its results' "config" (and so to the results JSON it writes)."""
        return {"fastdllm": self.decode_stats()}
