"""Decode one prompt with the shipped tiny model and a LiveView on stdout, once per mode named on the command
line ("plain", "rich", "auto"); run by tests/test_live.py in a pseudo-terminal."""

import sys

import torch

import fastdllm
from fastdllm.assets import tiny_model_path
from fastdllm.live import LiveView

torch.set_num_threads(1)
model = fastdllm.load_model(tiny_model_path(), device="cpu")
ids, mask = model.encode(["Ben has 12 pens. He finds 30 more. How many pens now?"])
for mode in sys.argv[1:]:
    print(f"=== MODE {mode}", flush=True)
    live = LiveView(model, plain={"plain": True, "rich": False, "auto": None}[mode], fps=0)
    result = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[live], gen_length=64, block_length=8,
                               cache="dual", unmask={"name": "threshold", "threshold": 0.9})
    live.finish(result)
    print(f"FINAL-TEXT: {result.texts[0]}")
    print(f"REDRAWS: {live.redraws} FORWARDS: {result.nfe}", flush=True)
