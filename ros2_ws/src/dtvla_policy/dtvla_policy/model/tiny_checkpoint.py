"""`dtvla-tiny-checkpoint OUT_DIR`: a small random-init checkpoint in the released checkpoints' format.

Used by tests, demos and benchmarks, since no weights can be downloaded here. It has the REAL vocabulary size
(257157) and the real special-token ids, so every id-dependent code path (codec, bans, mask) runs as with the
released model. The tokenizer is a Gemma-style byte-fallback BPE trained on a few robot sentences, padded with
`<unusedN>` entries up to id 257151, then the five special tokens at 257152-257156.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GemmaConfig, GemmaTokenizer, PaliGemmaConfig, SiglipVisionConfig

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.model.checkpoint import NORM_STATS_FILE
from dtvla_policy.model.conventions import SPECIAL_TOKEN_TEXT, THINK_INSTRUCTION, TokenIds
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.model.normalizer import QuantileNormalizer


@dataclass(frozen=True)
class ModelPreset:
    """Dimensions of a random-init checkpoint (the released model: LM 18 x 2048, ViT 27 x 1152 at 224)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_ffn: int
    image_size: int
    patch_size: int = 14


PRESETS = {
    # 2 layers, 16 tokens per image: fast enough for every test.
    "tiny": ModelPreset(hidden=64, layers=2, heads=2, ffn=128, vision_hidden=32, vision_layers=1, vision_heads=2,
                        vision_ffn=128, image_size=56),
    # ~100M-parameter transformer (plus the 257k x 768 tied embedding), 2 x 224 px images = 512 image tokens.
    "small": ModelPreset(hidden=768, layers=12, heads=12, ffn=3072, vision_hidden=384, vision_layers=6,
                         vision_heads=6, vision_ffn=1536, image_size=224),
    # The released model's architecture (PaliGemma-3B: Gemma-2B with 1 KV head, SigLIP-So400m/14), 2.9B
    # parameters: ~12 GB in fp32. For the real-size benchmark; writing it to disk is rarely what you want.
    "released": ModelPreset(hidden=2048, layers=18, heads=8, ffn=16384, vision_hidden=1152, vision_layers=27,
                            vision_heads=16, vision_ffn=4304, image_size=224),
}

# LIBERO-like q01/q99 of the 7 command dims (metres / radians per step; gripper in [-1, 1]).
DEMO_NORM_STATS = QuantileNormalizer(
    q01=np.array([-0.75, -0.80, -0.90, -0.11, -0.16, -0.21, -1.0]),
    q99=np.array([0.90, 0.86, 0.94, 0.12, 0.15, 0.26, 1.0]),
)

_CORPUS = [
    THINK_INSTRUCTION,
    "Task: pick up the black bowl between the plate and the ramekin and place it on the plate;",
    "Task: put the cream cheese in the bowl; Task: open the top drawer and put the bowl inside;",
    "Task: turn on the stove and put the moka pot on it; Task: put both the alphabet soup and the tomato sauce "
    "in the basket;",
    "The gripper (center) is open above the black bowl; the plate (right) is empty. Move down and grasp the bowl.",
    "The gripper holds the butter; the basket (right) already contains the cream cheese. Place the butter into "
    "the basket.",
    "Lift the bowl, move it to the left of the plate, lower it and release. Finish: the task is complete.",
]


def build_tokenizer(vocab_size: int = TokenIds().vocab_size) -> GemmaTokenizer:
    """Gemma-style tokenizer whose special tokens sit at the released ids (see module docstring)."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_previous")
    bpe.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    base_specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # ids 0-4, as in Gemma
    trainer = trainers.BpeTrainer(
        vocab_size=800, show_progress=False,
        special_tokens=base_specials + [f"<0x{i:02X}>" for i in range(256)],
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    n_regular = vocab_size - len(SPECIAL_TOKEN_TEXT)
    for i in range(len(vocab), n_regular):  # filler keeps the action range and special ids where upstream has them
        vocab[f"<unused{i}>"] = i
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                     for m in model["merges"]])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKEN_TEXT.values())})
    return tokenizer


def build_config(preset: ModelPreset, ids: TokenIds) -> PaliGemmaConfig:
    text = GemmaConfig(
        vocab_size=ids.vocab_size, hidden_size=preset.hidden, intermediate_size=preset.ffn,
        num_hidden_layers=preset.layers, num_attention_heads=preset.heads, num_key_value_heads=1,
        head_dim=preset.hidden // preset.heads, pad_token_id=ids.pad, bos_token_id=ids.bos, eos_token_id=ids.eos,
        hidden_activation="gelu_pytorch_tanh",
    )
    vision = SiglipVisionConfig(
        hidden_size=preset.vision_hidden, intermediate_size=preset.vision_ffn,
        num_hidden_layers=preset.vision_layers, num_attention_heads=preset.vision_heads,
        image_size=preset.image_size, patch_size=preset.patch_size, projection_dim=preset.hidden,
        vision_use_head=False,  # PaliGemma's SigLIP has no pooling head
    )
    config = PaliGemmaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=ids.image,
        projection_dim=preset.hidden, hidden_size=preset.hidden, vocab_size=ids.vocab_size,
    )
    for key, value in ids.config_entries().items():
        setattr(config, key, value)
    config.architectures = ["DeepThinkVLA"]
    return config


def write_tiny_checkpoint(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write a random-init checkpoint to `out_dir` atomically (temp dir + rename); returns the path."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    ids = TokenIds()
    tokenizer = build_tokenizer(ids.vocab_size)
    torch.manual_seed(seed)
    model = DeepThinkVLA(build_config(PRESETS[preset], ids)).eval()
    with new_directory(out_dir) as tmp:
        # save_pretrained imports DeepSpeed when installed, whose logger prints to stdout: keep stdout for results
        with contextlib.redirect_stdout(sys.stderr):
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / NORM_STATS_FILE).write_text(json.dumps(DEMO_NORM_STATS.to_stats(), indent=2))
        (tmp / "README.md").write_text(
            f"Random-init DeepThinkVLA checkpoint (preset {preset!r}, seed {seed}) written by dtvla-tiny-checkpoint."
            "\nIt is UNTRAINED: its actions and chain-of-thought are noise. For tests and demos only.\n"
        )
    return Path(out_dir).expanduser().resolve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to create (must not exist or be empty)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(args.out_dir, args.preset, args.seed)
    print(f"wrote UNTRAINED {args.preset} checkpoint to {path}")


if __name__ == "__main__":
    main()
