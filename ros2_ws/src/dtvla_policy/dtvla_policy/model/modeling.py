"""DeepThinkVLA: PaliGemma with a hybrid decoder (upstream `src/sft/modeling_deepthinkvla.py`).

The only differences from `PaliGemmaForConditionalGeneration` are on the input side:
  * the attention mask is the hybrid 4D mask of `hybrid_mask.py`, built from per-position segments;
  * the embeddings of action placeholder positions are zeroed, so the model never sees action identities
    (parallel decoding as in OpenVLA-OFT; Gemma's sqrt(d) scale keeps zeros at zero);
  * images are encoded once (`encode_images`) and scattered into the `<image>` slots, so a cached action pass
    or a batch can reuse the features.
Weights and keys are unchanged, so the released checkpoints load with `from_pretrained`.
"""

from __future__ import annotations

from functools import cached_property

import torch
from transformers import PaliGemmaForConditionalGeneration
from transformers.cache_utils import Cache

from dtvla_policy.model.conventions import TokenIds
from dtvla_policy.model.hybrid_mask import Segment, hybrid_mask, position_ids


class DeepThinkVLA(PaliGemmaForConditionalGeneration):
    """PaliGemma with the hybrid CoT/action attention of DeepThinkVLA."""

    @cached_property
    def token_ids(self) -> TokenIds:
        return TokenIds.from_config(self.config)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B * n_img, 3, S, S) -> (B * n_img, tokens_per_image, hidden) projected image features."""
        features = self.model.get_image_features(pixel_values).pooler_output
        return features.to(self.dtype)

    def embed(
        self,
        input_ids: torch.Tensor,
        segments: torch.Tensor,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with image features scattered into `<image>` slots and action slots zeroed.

        input_ids, segments: (B, L); image_features: (B * n_img, T, hidden) in slot order. Only prefix positions
        are image slots: an `<image>` id the model writes in its CoT keeps its token embedding, as in upstream's
        `generate`, where images are merged on the first step only.
        """
        embeds = self.get_input_embeddings()(input_ids)
        image_slots = (input_ids == self.config.image_token_id) & (segments == Segment.PREFIX)
        n_slots = int(image_slots.sum())
        if image_features is not None:
            if n_slots * embeds.shape[-1] != image_features.numel():
                raise ValueError(
                    f"{n_slots} <image> slots but {image_features.shape[0] * image_features.shape[1]} image features"
                )
            embeds = embeds.masked_scatter(image_slots[..., None], image_features.to(embeds.dtype))
        elif n_slots:
            raise ValueError(f"input holds {n_slots} <image> slots but no image features were given")
        placeholders = (segments == Segment.ACTION) & self._is_action_id(input_ids)
        return embeds * (~placeholders)[..., None].to(embeds.dtype)

    def _is_action_id(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Action ids (training targets) and the pad id (the inference placeholder) count as placeholders."""
        ids = self.token_ids
        return ((input_ids >= ids.action_begin) & (input_ids <= ids.action_end_id)) | (input_ids == ids.pad)

    def hybrid_forward(
        self,
        input_ids: torch.Tensor,
        segments: torch.Tensor,
        image_features: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        past_segments: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        compute_logits: bool = True,
    ):
        """Forward `input_ids` (B, Q) after `past_segments` (B, P) already in `past_key_values`.

        Builds the hybrid mask and 1-indexed, pad-skipping positions over [past, new]. With
        `compute_logits=False` the LM head is skipped and `hidden_states[-1]` is returned in `logits`'s place
        (the caller projects only the rows and vocabulary slice it needs).
        """
        all_segments = segments if past_segments is None else torch.cat([past_segments, segments], dim=1)
        query_len = input_ids.shape[1]
        mask = hybrid_mask(all_segments, self.dtype, query_len)
        positions = position_ids(all_segments)[:, -query_len:]
        embeds = self.embed(input_ids, segments, image_features)
        if not compute_logits:
            out = self.model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
            return out
        return self(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past_key_values,
            use_cache=use_cache,
            labels=labels,
            logits_to_keep=logits_to_keep,
        )

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., vocab): the LM head with Gemma's optional final-logit soft-capping, exactly as
        PaliGemma's forward applies it, for only the rows a caller needs (training projects no image rows)."""
        return self._soft_cap(self.lm_head(hidden))

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, N, hidden) -> (B, N, 2048) logits over the action sub-vocabulary only.

        Projecting onto 2048 rows of the LM head instead of 257k is what makes the parallel action pass cheap.
        """
        ids = self.token_ids
        weight = self.lm_head.weight[ids.action_begin : ids.action_end_id + 1]
        return self._soft_cap(hidden @ weight.T)

    def _soft_cap(self, logits: torch.Tensor) -> torch.Tensor:
        cap = getattr(self.config.get_text_config(), "final_logit_softcapping", None)
        return logits if cap is None else torch.tanh(logits / cap) * cap
