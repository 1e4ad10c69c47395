"""`dtvla-infer`: one prediction from two image files, printed as JSON (chunk, CoT, timings).

Exit codes: 0 a prediction was printed; 2 an input was refused (checkpoint, image, task, device, decoding
settings), with one line naming the problem and the fix; 3 the model produced non-finite logits or hidden
states (`NonFiniteOutputError`), so no chunk was printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

import numpy as np
from PIL import Image

from dtvla_policy.inference.engine import NonFiniteOutputError, PolicyEngine
from dtvla_policy.protocol import DecodeConfig, Mode

EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
UINT16_MAX = 65535


def read_rgb(path: str) -> np.ndarray:
    """An image file -> HxWx3 uint8 RGB, converted by the file's real range, never saturated.

    8-bit files (greyscale, palette, RGBA, ...) are converted by PIL. 16-bit integer files (and 32-bit integer
    ones holding values in [0, 65535], as PIL reads some 16-bit files) are scaled by the 16-bit range (v / 257,
    rounded); float files must hold values in [0, 1] (scaled by 255). Anything else is refused with a ValueError,
    as is a decompression bomb (more pixels than PIL's limit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _to_rgb8(image, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image {path} is refused as a decompression bomb ({err}); give a camera-sized image"
                         ) from None
    except (OSError, SyntaxError) as err:  # PIL raises SyntaxError for some corrupt headers
        raise ValueError(f"cannot read image {path}: {err}") from None


def _to_rgb8(image: Image.Image, path: str) -> np.ndarray:
    if image.mode in EIGHT_BIT_MODES:
        return np.asarray(image.convert("RGB"))
    values = np.asarray(image)
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and values.min() >= 0 and values.max() <= UINT16_MAX):
        grey = np.rint(values.astype(np.float64) / (UINT16_MAX / 255)).astype(np.uint8)
    elif image.mode == "F":
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(
                f"image {path} is a float image with values in [{values.min():g}, {values.max():g}]; only float "
                "images in [0, 1] are accepted: save it as 8-bit RGB"
            )
        grey = np.rint(values.astype(np.float64) * 255).astype(np.uint8)
    else:
        raise ValueError(
            f"image {path} has PIL mode {image.mode!r} (values {values.min()}..{values.max()}), which cannot be "
            "converted to 8-bit RGB without guessing its range: save it as 8-bit RGB"
        )
    return np.repeat(grey[..., None], 3, axis=-1)


def build_parser() -> argparse.ArgumentParser:
    """Every decoding default comes from `DecodeConfig` (upstream's); each flag that deviates says so."""
    defaults = DecodeConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (safetensors + norm_stats.json)")
    parser.add_argument("--agentview", required=True, help="third-person camera image file")
    parser.add_argument("--wrist", required=True, help="wrist camera image file")
    parser.add_argument("--task", required=True, help="task instruction")
    parser.add_argument("--mode", default=Mode.FULL.value, choices=[m.value for m in Mode])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 CUDA, fp32 CPU)")
    parser.add_argument("--max-cot-tokens", type=int, default=defaults.max_cot_tokens,
                        help=f"CoT cap, counted like upstream's max_new_tokens (default {defaults.max_cot_tokens}, "
                        "upstream's; lower is a deviation)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the random and sample modes")
    parser.add_argument("--force-think-start", action="store_true", default=defaults.force_think_start,
                        help="deviation: prefill <think> instead of letting the model write it")
    parser.add_argument("--ban-extra-specials", action="store_true", default=defaults.ban_extra_specials,
                        help="deviation: also ban pad, bos, <image>, </action> and a second <think> in the CoT")
    return parser


EXIT_REFUSED = 2
EXIT_NON_FINITE = 3


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        agentview, wrist = read_rgb(args.agentview), read_rgb(args.wrist)
        decode = DecodeConfig(max_cot_tokens=args.max_cot_tokens, seed=args.seed,
                              force_think_start=args.force_think_start, ban_extra_specials=args.ban_extra_specials)
        engine = PolicyEngine.from_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype, decode=decode)
        prediction = engine.predict(agentview, wrist, args.task, mode=args.mode)
    except NonFiniteOutputError as err:
        print(f"dtvla-infer: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_NON_FINITE
    except (FileNotFoundError, ValueError) as err:
        print(f"dtvla-infer: {err}", file=sys.stderr)
        return EXIT_REFUSED
    result = {
        "mode": prediction.mode,
        "actions": prediction.actions.tolist(),
        "cot": prediction.cot,
        "cot_tokens": prediction.cot_tokens,
        "cot_truncated": prediction.cot_truncated,
        "max_cot_tokens": decode.max_cot_tokens,
        "decode_deviations": decode.deviations(),
        "timings_ms": {k.removesuffix("_ms"): round(v, 3) for k, v in prediction.timings.items()},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
