"""How much each layer's keys and values change between adjacent decoding steps inside a block.

Fast-dLLM (arXiv 2505.22618, §3.1, its KV-similarity figure) justifies the approximate block-wise
cache by this: inside a block, the keys/values of the prompt and of the other blocks barely move from
one step to the next, so reusing them for the whole block costs little accuracy.

Method: decode each prompt (batch 1) with a callback that keeps the canvas every forward saw; then
recompute each of those canvases once in full into a fresh KV store (``step_logits`` over every
position, as a refresh does) and read every layer's keys ``[H_kv, L, D]`` and values from the store.
For adjacent forwards of the same block, the cosine similarity of each position's key (all heads
concatenated) and value is averaged per layer over four regions: the prompt, earlier blocks, the
current block, and later blocks. Keys are stored after RoPE; the same rotation at the same position
leaves the cosine unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from fastdllm.core.decoder import DiffusionDecoder, StepEvent

REGIONS = ("prompt", "earlier blocks", "current block", "later blocks")


def _kv(model, canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of every layer and position of ``canvas`` ``[1, L]``: two ``[layers, L, H_kv * D]``."""
    L = canvas.shape[1]
    store = model.new_kv_store(1, L)
    positions = torch.arange(L, device=canvas.device)  # [L]
    model.step_logits(canvas, 0, positions, store, positions[None, :], None, positions[:1])
    keys, values = store.keys[:, 0], store.values[:, 0]  # [layers, H_kv, L, D]

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 1, 3).reshape(t.shape[0], L, -1).float()  # [layers, L, H_kv * D]

    return flat(keys), flat(values)


def _canvases(model, ids: torch.Tensor, decoder: DiffusionDecoder) -> list[tuple[int, torch.Tensor]]:
    """(block, canvas) seen by each forward of the decode of one prompt ``ids`` ``[1, P]``."""
    G = decoder.config.gen_length
    first = torch.cat([ids, torch.full((1, G), model.mask_token_id, dtype=ids.dtype, device=ids.device)], 1)
    seen: list[tuple[int, torch.Tensor]] = []
    after: list[torch.Tensor] = [first]

    def keep(event: StepEvent) -> None:
        seen.append((event.step.block, after[-1]))
        after.append(event.canvas.clone())  # [1, L]: the next forward's input

    decoder.generate(ids, None, callbacks=[keep])
    return seen


@torch.inference_mode()
def kv_similarity(model, prompts: Sequence[str], *, gen_length: int, block_length: int, cache: Any = "none",
                  unmask: Any = "fixed", chat: bool = True) -> dict[str, Any]:
    """Per-layer cosine similarity of keys/values between adjacent forwards of a block (see the module doc).

    Returns a JSON-ready dict: ``keys``/``values`` map each region to a per-layer mean over every
    within-block pair of every prompt; ``per_pair`` holds the first prompt's per-pair, per-layer means
    over the positions outside the current block (the ones the dual cache reuses)."""
    if not prompts:
        raise ValueError("kv_similarity needs at least one prompt")
    decoder = DiffusionDecoder(model, gen_length=gen_length, block_length=block_length, cache=cache, unmask=unmask)
    sums = {kind: {r: None for r in REGIONS} for kind in ("keys", "values")}
    counts = {r: 0 for r in REGIONS}
    per_pair: dict[str, list] = {"keys": [], "values": [], "block": []}
    for n, prompt in enumerate(prompts):
        ids, _ = model.encode([prompt], chat=chat)  # [1, P]
        P = ids.shape[1]
        previous = None
        for block, canvas in _canvases(model, ids, decoder):
            current = _kv(model, canvas)
            if previous is not None and previous[0] == block:
                start, end = P + block * block_length, P + (block + 1) * block_length
                spans = dict(zip(REGIONS, ((0, P), (P, start), (start, end), (end, P + gen_length))))
                for kind, old, new in (("keys", previous[1][0], current[0]), ("values", previous[1][1], current[1])):
                    cos = F.cosine_similarity(old, new, dim=-1)  # [layers, L]
                    for region, (a, b) in spans.items():
                        if b > a:
                            total = cos[:, a:b].sum(-1)  # [layers]
                            sums[kind][region] = total if sums[kind][region] is None else sums[kind][region] + total
                            counts[region] += (b - a) if kind == "keys" else 0
                    if n == 0:
                        outside = torch.cat([cos[:, :start], cos[:, end:]], dim=1).mean(-1)  # [layers]
                        per_pair[kind].append(outside.tolist())
                if n == 0:
                    per_pair["block"].append(block)
            previous = (block, current)
    result = {kind: {r: (sums[kind][r] / counts[r]).tolist() for r in REGIONS if counts[r]}
              for kind in ("keys", "values")}
    return {"model": getattr(model, "name", "model"), "n_layers": len(next(iter(result["keys"].values()))),
            "prompts": len(prompts), "gen_length": gen_length, "block_length": block_length,
            "decode": {"cache": decoder.cache.spec(), "unmask": decoder.unmask.spec()},
            "positions_per_region": counts, **result, "per_pair": per_pair}


def plot_kv_similarity(data: dict[str, Any], path: str | Path) -> Path:
    """Heat maps (layer x adjacent-step pair, first prompt) for keys and values, and per-layer means by region."""
    import numpy as np

    from fastdllm.plots import figure

    fig = figure(13, 3.8)
    ax_k, ax_v, ax_r = fig.subplots(1, 3, width_ratios=[1.4, 1.4, 1])
    pairs = data["per_pair"]
    grids = {kind: np.array(pairs[kind]).T for kind in ("keys", "values")}  # [layers, pairs]
    low = min(float(g.min()) for g in grids.values())
    for ax, kind in ((ax_k, "keys"), (ax_v, "values")):
        image = ax.imshow(grids[kind], aspect="auto", interpolation="nearest", cmap="magma", vmin=low, vmax=1.0)
        starts = [i for i in range(1, len(pairs["block"])) if pairs["block"][i] != pairs["block"][i - 1]]
        for s in starts:
            ax.axvline(s - 0.5, color="tab:blue", lw=0.8, alpha=0.6)
        ax.set(xlabel="adjacent-step pair inside a block (blue lines: next block)", ylabel="layer",
               title=f"{kind}: cosine(step t, step t+1), positions outside the block")
        ax.title.set_fontsize(8)
        ax.set_yticks(range(grids[kind].shape[0]))
        fig.colorbar(image, ax=ax, fraction=0.05)
    layers = np.arange(data["n_layers"])
    for i, region in enumerate(REGIONS):
        if region in data["keys"]:
            ax_r.plot(layers, data["keys"][region], "o-", color=f"C{i}", label=f"{region} (K)")
            ax_r.plot(layers, data["values"][region], "s--", color=f"C{i}", alpha=0.7, label=f"{region} (V)")
    ax_r.set(xlabel="layer", ylabel="mean cosine similarity", title=f"mean over {data['prompts']} prompts")
    ax_r.title.set_fontsize(8)
    ax_r.set_xticks(layers)
    ax_r.grid(alpha=0.3)
    ax_r.legend(fontsize=6)
    decode = data["decode"]
    fig.suptitle(f"{data['model']}: key/value similarity between adjacent steps ({decode['cache']['name']} cache, "
                 f"{decode['unmask']['name']} unmask, gen {data['gen_length']}, block {data['block_length']})",
                 fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
