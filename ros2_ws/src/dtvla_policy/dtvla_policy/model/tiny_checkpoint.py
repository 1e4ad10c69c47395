"""`dtvla-tiny-checkpoint OUT_DIR`: a small random-init checkpoint in the released checkpoints' format.

Used by tests, demos and benchmarks, since no weights can be downloaded here. Two vocabularies:
  released  the REAL vocabulary size (257157) and special-token ids, so every id-dependent code path (codec, bans,
            mask) runs as with the released model. A Gemma-style byte-fallback BPE trained on a few robot
            sentences, padded with `<unusedN>` entries up to id 257151, then the five special tokens at 257152-257156;
  compact   the same layout after only COMPACT_TEXT_IDS text ids (`TokenIds.layout`): a BPE trained on LIBERO's
            instructions and CoT-style sentences (`robot_corpus`), the 2048 action ids, the 128-id gap, the five
            tags; 3205 ids in all. At small widths the 257k-row embedding and LM head would dominate the size and
            the CoT loss's compute; the ids are declared in config.json, and every reader takes them from there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GemmaConfig, GemmaTokenizer, PaliGemmaConfig, SiglipVisionConfig

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.model.checkpoint import NORM_STATS_FILE
from dtvla_policy.model.conventions import SPECIAL_TOKEN_TEXT, THINK_INSTRUCTION, TokenIds, prompt_text
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.model.normalizer import QuantileNormalizer
from dtvla_policy.model.robot_corpus import LIBERO_INSTRUCTIONS, cot_sentences


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
    vocab: str = "released"  # a key of VOCABS


VOCABS = ("released", "compact")
COMPACT_TEXT_IDS = 1024  # BPE merges, bytes and Gemma's 5 base specials; LIBERO's words all fit (the rest is filler)


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
    # The demo policy trained on this CPU (config/train/demo.yaml, docs/training.md): compact vocabulary, 2 x 112 px
    # images in 28 px patches = 2 x 16 image tokens (patch 14 would give 2 x 64: the LM then spends more than a
    # third of every step on image rows and trains 1.75x fewer samples per second here).
    "demo": ModelPreset(hidden=256, layers=4, heads=4, ffn=1024, vision_hidden=192, vision_layers=4, vision_heads=3,
                        vision_ffn=768, image_size=112, patch_size=28, vocab="compact"),
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


def compact_corpus() -> list[str]:
    """What the compact BPE learns from: the prompt of every LIBERO instruction and CoT-style sentences."""
    return [prompt_text(task) for task in LIBERO_INSTRUCTIONS] + cot_sentences()


def build_tokenizer(
    ids: TokenIds | None = None, corpus: Sequence[str] = _CORPUS, bpe_size: int = 800
) -> GemmaTokenizer:
    """Gemma-style tokenizer: a BPE of up to `bpe_size` ids (bytes and base specials included) learnt from
    `corpus`, `<unusedN>` filler up to the five tags, which land on `ids`' tag ids (see module docstring)."""
    ids = ids or TokenIds()
    if bpe_size > ids.action_begin:
        raise ValueError(f"a BPE of {bpe_size} ids would overlap the action ids from {ids.action_begin}")
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_previous")
    bpe.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    base_specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # ids 0-4, as in Gemma
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size, show_progress=False,
        special_tokens=base_specials + [f"<0x{i:02X}>" for i in range(256)],
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    n_regular = ids.vocab_size - len(SPECIAL_TOKEN_TEXT)
    for i in range(len(vocab), n_regular):  # filler keeps the action range and special ids where `ids` has them
        vocab[f"<unused{i}>"] = i
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                     for m in model["merges"]])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKEN_TEXT.values())})
    return tokenizer


def build_vocab_tokenizer(vocab: str) -> tuple[TokenIds, GemmaTokenizer]:
    """The ids and tokenizer of a vocabulary of VOCABS."""
    if vocab == "released":
        ids = TokenIds()
        return ids, build_tokenizer(ids)
    if vocab == "compact":
        ids = TokenIds.layout(COMPACT_TEXT_IDS)
        return ids, build_tokenizer(ids, compact_corpus(), bpe_size=COMPACT_TEXT_IDS)
    raise ValueError(f"unknown vocabulary {vocab!r}; choose one of {', '.join(VOCABS)}")


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


def write_tiny_checkpoint(out_dir: str | Path, preset: str = "tiny", seed: int = 0, vocab: str | None = None) -> Path:
    """Write a random-init checkpoint to `out_dir` atomically (temp dir + rename); returns the path.

    vocab: one of VOCABS; None takes the preset's.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    vocab = vocab or PRESETS[preset].vocab
    ids, tokenizer = build_vocab_tokenizer(vocab)
    torch.manual_seed(seed)
    model = DeepThinkVLA(build_config(PRESETS[preset], ids)).eval()
    with new_directory(out_dir) as tmp:
        # save_pretrained imports DeepSpeed when installed, whose logger prints to stdout: keep stdout for results
        with contextlib.redirect_stdout(sys.stderr):
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / NORM_STATS_FILE).write_text(json.dumps(DEMO_NORM_STATS.to_stats(), indent=2))
        (tmp / "README.md").write_text(
            f"Random-init DeepThinkVLA checkpoint (preset {preset!r}, {vocab} vocabulary of {ids.vocab_size} ids, "
            f"seed {seed}) written by dtvla-tiny-checkpoint."
            "\nIt is UNTRAINED: its actions and chain-of-thought are noise. For tests and demos only.\n"
        )
    return Path(out_dir).expanduser().resolve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to create (must not exist or be empty)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--vocab", default=None, choices=VOCABS,
                        help="released: the 257157 released ids; compact: a 3205-id LIBERO vocabulary (default: the "
                        "preset's: compact for demo, released for the others)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(args.out_dir, args.preset, args.seed, args.vocab)
    print(f"wrote UNTRAINED {args.preset} checkpoint to {path}")


if __name__ == "__main__":
    main()
