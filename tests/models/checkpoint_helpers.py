"""Tiny LLaDA / Dream checkpoints for the model tests: configs, tokenizers, hand-written HF folders, oracles.

The hand-written folders spell the real HF key names out here (independently of the adapters'
``hf_key_map``) and never go through ``save_checkpoint``, so they check the loader against the
real layout. Token ids are small (vocab 64) so a real ``tokenizer.json`` can hold them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import spread_init
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import fastdllm

VOCAB, MASK, EOS, END_TURN = 64, 63, 1, 2
FAMILIES = tuple(fastdllm.model_adapters.names())  # every registered family (tiny_config, hf_key_map, ...)

LLADA_SPECIALS = {"[UNK]": 0, "<|endoftext|>": EOS, "<|eot_id|>": END_TURN, "<|startoftext|>": 3,
                  "<|start_header_id|>": 4, "<|end_header_id|>": 5, "<|mdm_mask|>": MASK}
DREAM_SPECIALS = {"[UNK]": 0, "<|endoftext|>": EOS, "<|im_end|>": END_TURN, "<|im_start|>": 3, "<|mask|>": MASK}
LLADA_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
                  "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
                  "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
DREAM_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                  "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ["\n", " ", "user", "assistant", "system", "a", "bb", "c", "hello", "world", ".", ","]


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the thread pool's
    spinning makes each forward ~50x slower; import this fixture into a test module to use it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(family: str, **overrides) -> dict:
    """The family's own tiny config: vocab 64, d 32, 2 layers, 4 heads, mask 63, EOS 1, end of turn 2."""
    return fastdllm.model_adapters.get(family).tiny_config(**overrides)


def tiny_model(family: str, seed: int = 0, **overrides) -> fastdllm.DiffusionLM:
    """Random (``spread_init``) tiny model whose LM head never prefers the mask token: its row is zero,
    and some other logit is positive for any hidden state in practice (63 random rows). The decoder
    would otherwise commit the mask id and leave the position masked forever."""
    torch.manual_seed(seed)
    model = spread_init(fastdllm.model_adapters.get(family)(tiny_config(family, **overrides)), seed)
    with torch.no_grad():
        model.net.lm_head.weight[MASK] = 0
    return model


def tiny_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A real word-level ``tokenizer.json`` over 64 ids with the family's special tokens and chat template."""
    specials = LLADA_SPECIALS if family == "llada" else DREAM_SPECIALS
    vocab = dict(specials)
    free = [i for i in range(VOCAB) if i not in specials.values()]
    vocab.update(zip(WORDS + [f"w{j}" for j in range(VOCAB)], free))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s|\w+|[^\w\s]+"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    names = {v: k for k, v in specials.items()}
    extra = [t for t in specials if t not in ("[UNK]", names[EOS], names[MASK], "<|startoftext|>")]
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token=names[EOS],
                                  pad_token=names[EOS], mask_token=names[MASK], additional_special_tokens=extra,
                                  bos_token="<|startoftext|>" if family == "llada" else None, padding_side="left")
    tok.chat_template = LLADA_TEMPLATE if family == "llada" else DREAM_TEMPLATE
    return tok


# ---- hand-written checkpoints, real HF key names -------------------------------------------------
def hf_shapes(family: str, cfg: dict) -> dict[str, tuple[int, ...]]:
    """Checkpoint key → shape, as the family's own modeling code names them (docs/models.md)."""
    if family == "llada":
        d, f, V, n = cfg["d_model"], cfg["mlp_hidden_size"], cfg["vocab_size"], cfg["n_layers"]
        kv = d // cfg["n_heads"] * cfg["n_kv_heads"]
        t = "model.transformer"
        shapes = {f"{t}.wte.weight": (V, d), f"{t}.ln_f.weight": (d,), f"{t}.ff_out.weight": (V, d)}
        for i in range(n):
            b = f"{t}.blocks.{i}"
            shapes.update({f"{b}.attn_norm.weight": (d,), f"{b}.ff_norm.weight": (d,), f"{b}.q_proj.weight": (d, d),
                           f"{b}.k_proj.weight": (kv, d), f"{b}.v_proj.weight": (kv, d),
                           f"{b}.attn_out.weight": (d, d), f"{b}.ff_proj.weight": (f, d),
                           f"{b}.up_proj.weight": (f, d), f"{b}.ff_out.weight": (d, f)})
        return shapes
    d, f, V, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,), "lm_head.weight": (V, d)}
    for i in range(n):
        b = f"model.layers.{i}"
        shapes.update({f"{b}.input_layernorm.weight": (d,), f"{b}.post_attention_layernorm.weight": (d,),
                       f"{b}.self_attn.q_proj.weight": (d, d), f"{b}.self_attn.q_proj.bias": (d,),
                       f"{b}.self_attn.k_proj.weight": (kv, d), f"{b}.self_attn.k_proj.bias": (kv,),
                       f"{b}.self_attn.v_proj.weight": (kv, d), f"{b}.self_attn.v_proj.bias": (kv,),
                       f"{b}.self_attn.o_proj.weight": (d, d), f"{b}.mlp.gate_proj.weight": (f, d),
                       f"{b}.mlp.up_proj.weight": (f, d), f"{b}.mlp.down_proj.weight": (d, f)})
    return shapes


def random_hf_weights(family: str, cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the real key names: embeddings N(0,1), matrices N(0,0.3²), biases N(0,0.1²),
    norm weights 1 + N(0,0.1²) (not ones, so a swapped norm would show)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in hf_shapes(family, cfg).items():
        x = torch.randn(shape, generator=gen)
        if "norm" in key or key.endswith("ln_f.weight"):
            out[key] = 1 + 0.1 * x
        elif key.endswith(".bias"):
            out[key] = 0.1 * x
        else:
            out[key] = x * (1.0 if ("wte" in key or "embed" in key) else 0.3)
    return out


def write_hf_folder(folder: Path, family: str, weights: dict[str, torch.Tensor], cfg: dict,
                    shards: int = 2) -> Path:
    """Write config.json and ``shards`` safetensors files + index by hand (HF's layout, not our writer)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    keys = list(weights)
    if shards == 1:
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: weights[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in weights.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return folder


# ---- transformers oracles ----------------------------------------------------------------------
LLADA_TO_LLAMA = {"attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm",
                  "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
                  "attn_out": "self_attn.o_proj", "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
                  "ff_out": "mlp.down_proj"}


def hf_oracle(family: str, cfg: dict, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """transformers' ``LlamaForCausalLM`` (LLaDA, keys renamed) or ``Qwen2ForCausalLM`` (Dream), fp32, eager."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if family == "llada":
        hf_cfg = LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["d_model"],
                             intermediate_size=cfg["mlp_hidden_size"], num_hidden_layers=cfg["n_layers"],
                             num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_heads"],
                             max_position_embeddings=cfg["max_sequence_length"], rope_theta=cfg["rope_theta"],
                             rms_norm_eps=cfg["rms_norm_eps"], attention_bias=False, mlp_bias=False,
                             hidden_act="silu", tie_word_embeddings=False, attn_implementation="eager")
        model = LlamaForCausalLM(hf_cfg)
        renamed = {}
        for key, tensor in weights.items():
            parts = key.split(".")
            if parts[2] == "blocks":
                renamed[f"model.layers.{parts[3]}.{LLADA_TO_LLAMA[parts[4]]}.weight"] = tensor
            else:
                renamed[{"wte": "model.embed_tokens.weight", "ln_f": "model.norm.weight",
                         "ff_out": "lm_head.weight"}[parts[2]]] = tensor
        weights = renamed
    else:
        hf_cfg = Qwen2Config(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                             intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
                             num_attention_heads=cfg["num_attention_heads"],
                             num_key_value_heads=cfg["num_key_value_heads"],
                             max_position_embeddings=cfg["max_position_embeddings"], rope_theta=cfg["rope_theta"],
                             rms_norm_eps=cfg["rms_norm_eps"], hidden_act="silu", tie_word_embeddings=False,
                             attn_implementation="eager")
        model = Qwen2ForCausalLM(hf_cfg)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def hf_logits(oracle: torch.nn.Module, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Bidirectional logits ``[B, L, V]``: a 4-D additive mask (finfo.min at padded keys), positions
    cumsum(mask) - 1 clipped at 0."""
    B, L = ids.shape
    mask = torch.zeros(B, 1, L, L).masked_fill(~real[:, None, None, :], torch.finfo(torch.float32).min)
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        return oracle(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids ``[B, max(lengths)]`` (no special ids), left-padded with EOS, and the real-token mask."""
    gen = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.full((len(lengths), L), EOS, dtype=torch.long)
    real = torch.zeros((len(lengths), L), dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, L - n:] = torch.randint(6, MASK, (n,), generator=gen)
        real[i, L - n:] = True
    return ids, real


def experiment_script(name: str):
    """``experiments/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
