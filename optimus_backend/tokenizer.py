"""Tokenizer of a checkpoint directory: tokenizer.json via `tokenizers`, chat template from tokenizer_config.json."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from tokenizers import Tokenizer as FastTokenizer

MASK_TOKEN_SPELLINGS = ("<|mask|>", "<|MASK|>", "|<MASK>|", "<mask>", "[MASK]")


class Tokenizer:
    """Encode / decode / chat template over a Hugging Face tokenizer.json."""

    def __init__(self, directory: Path):
        path = Path(directory) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer.json is missing from the checkpoint")
        self.fast = FastTokenizer.from_file(str(path))
        config_path = Path(directory) / "tokenizer_config.json"
        self.config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template = self.config.get("chat_template")
        self.chat_template = jinja2.Template(template) if isinstance(template, str) else None

    @property
    def vocab_size(self) -> int:
        return self.fast.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self.fast.token_to_id(token)

    def find_mask_token(self) -> int | None:
        """The id of the mask token under one of its usual spellings, if the vocabulary has one."""
        for spelling in (self.config.get("mask_token"), *MASK_TOKEN_SPELLINGS):
            if isinstance(spelling, str) and self.token_id(spelling) is not None:
                return self.token_id(spelling)
        return None

    def encode(self, text: str) -> list[int]:
        return self.fast.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.fast.decode(ids, skip_special_tokens=True)

    def apply_chat_template(self, prompt: str) -> str:
        """Wraps a user prompt in the checkpoint's chat template (unchanged when it has none)."""
        if self.chat_template is None:
            return prompt
        return self.chat_template.render(
            messages=[{"role": "user", "content": prompt}], add_generation_prompt=True
        )
