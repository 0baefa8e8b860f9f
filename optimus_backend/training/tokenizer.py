"""The shipped model's tokenizer: a byte-level BPE trained with `tokenizers`, digits split one per token.

Writes the Hugging Face files a checkpoint carries (tokenizer.json, tokenizer_config.json with the chat
template, special_tokens_map.json); ``optimus_backend.tokenizer.Tokenizer`` reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, EOS, MASK = "<|pad|>", "<|eos|>", "<|mask|>"
ROLES = ("system", "user", "assistant")
SPECIALS = (PAD, EOS, MASK) + tuple(f"<|{role}|>" for role in ROLES)  # ids 0.. in this order
VOCAB_SIZE = 2048

# Every turn is <|role|>content<|eos|>; the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE over ``texts`` with our specials first (pad 0, eos 1, mask 2, roles)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, directory: Path) -> None:
    """tokenizer.json, tokenizer_config.json (chat template, special names) and special_tokens_map.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    names = {"pad_token": PAD, "eos_token": EOS, "mask_token": MASK}
    extra = [s for s in SPECIALS if s not in names.values()]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        **names,
        "additional_special_tokens": extra,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(
        json.dumps({**names, "additional_special_tokens": extra}, indent=2) + "\n"
    )
