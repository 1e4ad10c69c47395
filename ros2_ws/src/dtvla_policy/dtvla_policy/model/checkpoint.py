"""Loading a DeepThinkVLA checkpoint directory: safetensors weights, config, tokenizer and norm stats.

The released checkpoints (yinchenghust/deepthinkvla_libero_cot_*) and the ones `dtvla-train-sft` and
`dtvla-tiny-checkpoint` write share this layout:
  config.json (PaliGemma config + the token-index keys), model.safetensors (or an index + shards),
  tokenizer.json / tokenizer_config.json, norm_stats.json.
Loading is local only, safetensors only and never runs remote code. It refuses a directory without norm stats
or whose tokenizer disagrees with the config about the special token ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from dtvla_policy.model.conventions import NORM_STATS_FILE, SPECIAL_TOKEN_TEXT, TokenIds
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.model.normalizer import QuantileNormalizer

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """Everything the engine needs from one checkpoint directory."""

    path: Path
    model: DeepThinkVLA
    tokenizer: PreTrainedTokenizerBase
    normalizer: QuantileNormalizer
    token_ids: TokenIds

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def tokens_per_image(self) -> int:
        vision = self.model.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """None -> bf16 on CUDA, fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(table)} or 'auto'")
    return table[dtype]


def check_device(device: str) -> torch.device:
    """Refuse a device string torch does not know, or a CUDA/MPS device this machine does not have."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} asked for, but this machine/torch build has no CUDA device; "
                             "use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {device!r} asked for, but only {count} CUDA device(s) exist")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} asked for, but MPS is not available here; use cpu")
    elif parsed.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return parsed


def check_safetensors(path: Path) -> None:
    """Read each weight file's header: an empty, truncated or foreign file is refused here, by name."""
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{file} is not a complete safetensors file ({err}); it is empty, truncated or corrupt: copy it "
                "again from its source"
            ) from None


def check_checkpoint_dir(path: Path) -> None:
    """Refuse early, with the fix in the message, what `from_pretrained` would refuse late or silently."""
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; is it a DeepThinkVLA checkpoint directory?")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        hint = f" (found pickle weights {pickles}: convert them to safetensors)" if pickles else ""
        raise FileNotFoundError(f"{path} has no *.safetensors weights{hint}; only safetensors are loaded")
    if not (path / NORM_STATS_FILE).is_file():
        raise FileNotFoundError(
            f"{path} has no {NORM_STATS_FILE}; copy it from the training dataset's meta/ folder "
            "(actions cannot be unnormalised without it)"
        )


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, ids: TokenIds, path: Path) -> None:
    """The tokenizer and config must agree on every special token id, or prompts and decoding break silently."""
    for field, text in SPECIAL_TOKEN_TEXT.items():
        found = tokenizer.convert_tokens_to_ids(text)
        expected = getattr(ids, field)
        if found != expected:
            raise ValueError(
                f"checkpoint {path}: tokenizer maps {text} to {found} but config.json says {expected}; "
                "the tokenizer files and config.json come from different checkpoints"
            )
    for field in ("pad", "eos", "bos"):
        found = getattr(tokenizer, f"{field}_token_id")
        if found != getattr(ids, field):
            raise ValueError(
                f"checkpoint {path}: tokenizer {field} id {found} != config {field} id {getattr(ids, field)}"
            )


def load_checkpoint(path: str | Path, device: str = "cpu", dtype: str | torch.dtype | None = None) -> Checkpoint:
    """Load and validate a checkpoint directory; the model is returned in eval mode on `device`."""
    path = Path(path).expanduser().resolve()
    check_device(device)
    check_checkpoint_dir(path)
    check_safetensors(path)
    normalizer = QuantileNormalizer.from_json(path / NORM_STATS_FILE)
    torch_dtype = resolve_dtype(dtype, device)
    model = DeepThinkVLA.from_pretrained(
        path, local_files_only=True, use_safetensors=True, dtype=torch_dtype, trust_remote_code=False
    )
    ids = TokenIds.from_config(model.config)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    check_tokenizer(tokenizer, ids, path)
    model.to(device).eval()
    log.info("loaded %s (%.1fM params, %s, %s)", path, model.num_parameters() / 1e6, torch_dtype, device)
    return Checkpoint(path=path, model=model, tokenizer=tokenizer, normalizer=normalizer, token_ids=ids)
