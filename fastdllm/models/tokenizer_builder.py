"""Train a small byte-level BPE tokenizer with LLaDA-style special tokens.

Digits are always split into single tokens, so arithmetic stays digit-aligned.
The result is a ``transformers`` fast tokenizer with a LLaDA chat template::

    <|startoftext|><|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n

Encoding never adds BOS/EOS by itself (as in LLaDA); the chat template adds BOS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"  # also the pad token
EOT_TOKEN = "<|eot_id|>"
MASK_TOKEN = "<|mdm_mask|>"
START_HEADER_TOKEN = "<|start_header_id|>"
END_HEADER_TOKEN = "<|end_header_id|>"

#: Special token -> id; the ids are fixed at 0..5 in this order.
SPECIAL_TOKENS: dict[str, int] = {
    tok: i
    for i, tok in enumerate(
        (BOS_TOKEN, EOS_TOKEN, EOT_TOKEN, MASK_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN)
    )
}

#: LLaDA-style chat template: BOS once, then one header block per message.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# Text seen once per corpus text so the chat scaffolding gets its own merges.
_CHAT_SCAFFOLD = "user\n\nassistant\n\n"
_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


def _with_scaffold(texts: Iterable[str]) -> Iterator[str]:
    """Yield every text, each followed by the chat scaffold words."""
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must yield str, got {type(text).__name__} {text!r}.")
        yield text
        yield _CHAT_SCAFFOLD


def _check_digits(tokenizer: Tokenizer) -> None:
    """Raise if any digit string does not encode to one token per digit."""
    for sample in ("0123456789", " 9876543210", "a1b22c333."):
        encoding = tokenizer.encode(sample, add_special_tokens=False)
        digit_tokens = [t for t in encoding.tokens if any(c.isdigit() for c in t)]
        if any(len(t) != 1 for t in digit_tokens) or len(digit_tokens) != sum(
            c.isdigit() for c in sample
        ):
            raise RuntimeError(f"Digits were merged when encoding {sample!r}: {encoding.tokens}.")


def build_tokenizer(
    texts: Iterable[str], vocab_size: int = 384, chat_scaffold: bool = True
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it for ``transformers``.

    Args:
        texts: Training corpus (e.g. prompts and responses of a task).
        vocab_size: Target vocabulary size including the 256 byte tokens and
            the 6 special tokens (must be >= 262).
        chat_scaffold: Also count the chat-template words (``user``,
            ``assistant``, ``\\n\\n``) once per text so they become single tokens.

    Returns:
        A fast tokenizer with ``bos/eos/pad/mask`` tokens set, left padding and
        the LLaDA chat template. Special-token ids are :data:`SPECIAL_TOKENS`.
    """
    if vocab_size < _MIN_VOCAB:
        raise ValueError(
            f"vocab_size must be >= {_MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} "
            f"special tokens), got {vocab_size}."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _with_scaffold(texts) if chat_scaffold else iter(texts)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    for token, expected in SPECIAL_TOKENS.items():
        if tokenizer.token_to_id(token) != expected:
            raise RuntimeError(
                f"Special token {token!r} got id {tokenizer.token_to_id(token)}, expected {expected}."
            )
    _check_digits(tokenizer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        additional_special_tokens=[EOT_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> Path:
    """Save with ``save_pretrained`` (tokenizer.json, tokenizer_config.json and the
    chat template); ``AutoTokenizer.from_pretrained(folder)`` restores it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder
