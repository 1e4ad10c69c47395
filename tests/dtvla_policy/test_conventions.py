"""Prompt conventions: the task string is normalised exactly as upstream does, and nothing more."""

import pytest

from dtvla_policy.model.conventions import format_task, prompt_text
from dtvla_policy.model.sequence import check_task, prefix_ids


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("Put_the BOWL on the plate", "put the bowl on the plate"),
        ("  put the bowl  ", "  put the bowl  "),  # upstream does not strip: neither do we
        ("open_the\ttop drawer\n", "open the\ttop drawer\n"),
    ],
)
def test_format_task_lowercases_and_replaces_underscores_only(task, expected):
    assert format_task(task) == expected
    assert prompt_text(task).endswith(f"Task: {expected};\n")


@pytest.mark.parametrize("task", ["", "   ", "\t\n"])
def test_an_empty_or_blank_task_is_refused(task):
    with pytest.raises(ValueError, match="empty"):
        check_task(task)


@pytest.mark.parametrize("task", [" Put_the bowl on the plate ", "pick up the black bowl"])
def test_prefix_text_ids_decode_to_the_byte_exact_prompt(tiny_engine, task):
    ids = tiny_engine.ids
    prefix = prefix_ids(tiny_engine.ckpt.tokenizer, ids, task, n_images=2, tokens_per_image=3)
    assert prefix[:7] == [ids.image] * 6 + [ids.bos]
    assert tiny_engine.ckpt.tokenizer.decode(prefix[7:]) == prompt_text(task)
