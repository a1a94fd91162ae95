"""A prompt decoded inside a left-padded batch gives the same tokens as decoded alone (fp32, temperature 0),
for every cache policy x unmask policy."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4
CACHES = {"none": "none", "prefix": "prefix", "dual": "dual",
          "refresh-interval": {"name": "refresh-interval", "interval": 2, "reuse": "dual"}}
UNMASKS = {"fixed": {"name": "fixed", "steps": 6}, "threshold": {"name": "threshold", "threshold": 0.2},
           "factor": {"name": "factor", "factor": 2.5}}
# the prompt under test is row 1, the shortest: the batch left-pads it by 5 positions
BATCH = random_prompts(3, [9, 4, 7], seed=5)


@pytest.mark.parametrize("unmask", list(UNMASKS))
@pytest.mark.parametrize("cache", list(CACHES))
def test_padded_batch_decodes_like_alone(cache, unmask):
    options = dict(gen_length=GEN, block_length=BLOCK, cache=CACHES[cache], unmask=UNMASKS[unmask])
    batch = fastdllm.generate(mask_free_llada(), BATCH, **options)
    for row in range(len(BATCH)):
        alone = fastdllm.generate(mask_free_llada(), [BATCH[row]], **options)
        assert torch.equal(batch.generated[row], alone.generated[0]), f"row {row}"
        assert torch.equal(batch.commit_forward[row], alone.commit_forward[0]), f"row {row}"
        assert int(batch.nfe_per_row[row]) == alone.nfe
        # the prompt itself comes back unchanged, right-aligned after the padding
        assert batch.sequences[row, batch.prompt_length - len(BATCH[row]):batch.prompt_length].tolist() == BATCH[row]
    if unmask != "fixed":
        assert int(batch.nfe_per_row.min()) < GEN  # the parallel rules did commit several tokens at once


def test_attention_mask_tensor_equals_list_padding():
    """Prompt tensor + attention mask (left-padded by hand, with a junk pad id) decodes like the list form."""
    model = mask_free_llada()
    width = max(map(len, BATCH))
    ids = torch.full((len(BATCH), width), 7)  # pad with an ordinary token: the mask must hide it
    mask = torch.zeros((len(BATCH), width), dtype=torch.long)
    for i, p in enumerate(BATCH):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    options = dict(gen_length=GEN, block_length=BLOCK, cache="dual", unmask=UNMASKS["threshold"])
    from_list = fastdllm.generate(model, BATCH, **options)
    from_tensor = fastdllm.generate(model, ids, attention_mask=mask, **options)
    assert torch.equal(from_list.generated, from_tensor.generated)
