"""What decides a cut decoder's quality, on a tiny random Llama: the super-network starts as the shipped
teacher (same logits at step 0), members made for a heal target keep the most layers that fit with
whole KV groups, screening keeps the lowest perplexity, and healing maps each kept layer to its origin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from elastic_lm.errors import ConfigError
from test_decoder_recipe import tiny_config


def _space_and_model():  # type: ignore[no-untyped-def]
    from elastic_lm.model import ElasticConfig, build_model
    from elastic_lm.space import preset

    space = preset("llama", layers=4, hidden=32, heads=4, kv_heads=2, ffn=64, ffn_step=16,
                   hidden_choices=[16, 24, 32], uniform=True)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(ElasticConfig.from_space(space, vocab_size=28, task="causal-lm")).eval()
    return space, model


def test_the_largest_sub_network_is_the_shipped_teacher_at_step_0(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase
) -> None:
    from elastic_lm.train.build import model_from_config, space_from_config

    config = tiny_config(tmp_path, tiny_tokenizer)
    supernet = model_from_config(config, space_from_config(config)).eval()
    teacher = LlamaForCausalLM.from_pretrained(config.model.source).eval()
    ids = torch.tensor([[3, 5, 7, 11, 2, 9, 4, 6], [8, 1, 3, 3, 12, 5, 7, 2]])
    with torch.no_grad(), supernet.using(supernet.backbone.largest()):
        ours = supernet(input_ids=ids).logits
        theirs = teacher(input_ids=ids).logits
    assert not torch.equal(supernet.backbone.embeddings.word.weight, teacher.model.embed_tokens.weight)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)  # reordered, yet the same function


def test_targeted_candidates_fit_keep_whole_kv_groups_and_the_best_layers() -> None:
    from elastic_lm.metrics.size import count_params
    from elastic_lm.pipeline.recipes.decoder_seeds import target_candidates

    space, model = _space_and_model()
    full = count_params(model.config, space.largest(), False)
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7])  # layer 1 goes first, then layer 2
    out = target_candidates(space, model, scores, 0.6 * full)
    assert out
    shapes = set()
    for arch in out:
        space.validate(arch)
        assert count_params(model.config, arch, False) <= 0.6 * full
        body = [la for la in arch.layers if not la.is_identity]
        kept = [i for i, la in enumerate(arch.layers) if not la.is_identity]
        assert kept in ([0, 1, 2, 3], [0, 2, 3], [0, 3])  # at least half the layers, dropped by score
        assert body[0].heads == 2 * body[0].kv_heads  # whole groups: 2 query heads per KV head
        shapes.add((arch.hidden, body[0].kv_heads, body[0].ffn))
        if len(kept) < 4:  # one more layer would not fit
            more = max((i for i in range(4) if i not in kept), key=lambda i: float(scores[i]))
            wider = tuple(body[0] if i in kept or i == more else la for i, la in enumerate(arch.layers))
            bigger = type(arch)(hidden=arch.hidden, layers=wider)
            assert count_params(model.config, bigger, False) > 0.6 * full
    assert len(shapes) == len(out)  # one member per (hidden, KV groups, FFN) mix
    assert {s[0] for s in shapes} == {24, 32}  # hidden 16 alone would cut below 60%


def test_screening_keeps_the_lowest_perplexity() -> None:
    from elastic_lm.importance.decoder import sub_perplexity
    from elastic_lm.pipeline.recipes.decoder_seeds import screen, target_candidates

    space, model = _space_and_model()
    candidates = target_candidates(space, model, torch.tensor([0.9, 0.1, 0.5, 0.7]), 1e9)[:6]
    batches = [{"input_ids": torch.randint(0, 28, (2, 8), generator=torch.Generator().manual_seed(1))}]
    best = screen(model, candidates, batches, 2)
    values = sorted(sub_perplexity(model, a, batches) for a in candidates)
    assert [sub_perplexity(model, a, batches) for a in best] == values[:2]
    assert values[0] < values[-1]


def test_healing_maps_each_kept_layer_to_the_teacher_layer_it_came_from() -> None:
    from elastic_lm.heal.distill import HealBudget, heal_model, kept_layer_map

    assert kept_layer_map([0, 2, 3]) == [0, 1, 3, 4]
    teacher = LlamaForCausalLM(
        LlamaForCausalLM.config_class(vocab_size=28, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1)
    )  # fmt: skip
    student = LlamaForCausalLM(
        teacher.config.__class__(**{**teacher.config.to_dict(), "num_hidden_layers": 3})
    )
    rows = [{"input_ids": [1, 2, 3, 4]}] * 4

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([r["input_ids"] for r in batch])}

    budget = HealBudget(tokens=4, batch_size=1)
    with pytest.raises(ConfigError, match="kept_layers"):
        heal_model(student, teacher, rows, collate, budget, [{"name": "hidden"}], kept_layers=[0, 2])
    result = heal_model(student, teacher, rows, collate, budget, [{"name": "hidden"}], kept_layers=[0, 2, 3])
    assert result.steps == 1
