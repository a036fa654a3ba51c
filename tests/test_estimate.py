import pytest

from harness.candidate import estimate as E
from harness.errors import HarnessError

GiB = 1024 ** 3


def test_components_add_up_and_order_the_methods():
    by_method = {m: E.estimate("llama-7b", m, batch_size=4, seq_len=512) for m in E.METHODS}
    for e in by_method.values():
        assert e.total == pytest.approx(sum(e.components.values()))
        assert all(v >= 0 for v in e.components.values())
        assert set(e.components) == {"weights", "adapter", "gradients", "optimizer", "activations", "logits",
                                     "overhead"}
    q, lo, full = by_method["qlora"], by_method["lora"], by_method["full"]
    assert q.components["weights"] < lo.components["weights"] == full.components["weights"]
    assert q.trainable == lo.trainable < full.trainable == full.params
    assert full.components["adapter"] == 0
    # full fine-tuning in bf16 with AdamW: 2 + 2 + 12 bytes per parameter (ZeRO's accounting)
    per_param = sum(full.components[c] for c in ("weights", "gradients", "optimizer")) / full.params
    assert per_param == pytest.approx(16)
    # LoRA: fp32 adapters, fp32 gradients, two fp32 AdamW moments
    assert lo.components["gradients"] == lo.components["adapter"] == lo.trainable * 4
    assert lo.components["optimizer"] == lo.trainable * 8


def test_activations_scale_with_tokens_and_shrink_with_checkpointing():
    small = E.estimate("llama-7b", "qlora", batch_size=1, seq_len=512)
    big = E.estimate("llama-7b", "qlora", batch_size=4, seq_len=512)
    ckpt = E.estimate("llama-7b", "qlora", batch_size=4, seq_len=512, gradient_checkpointing=True)
    assert big.components["activations"] > 3.9 * small.components["activations"]
    # trl computes the loss in tiles of at most 4096 tokens x 32768 vocabulary entries ...
    assert big.components["logits"] < 0.4 * GiB
    # ... where a plain cross-entropy keeps every logit: 4 x the tokens, 4 x the memory
    plain = [E.estimate("llama-7b", "qlora", batch_size=b, seq_len=512, fused_lm_head=False) for b in (1, 4)]
    assert plain[1].components["logits"] == 4 * plain[0].components["logits"] > 0.8 * GiB
    assert ckpt.components["activations"] < big.components["activations"] / 10
    assert ckpt.components["weights"] == big.components["weights"]
    eager = E.estimate("llama-7b", "qlora", batch_size=4, seq_len=2048, attention="eager")
    sdpa = E.estimate("llama-7b", "qlora", batch_size=4, seq_len=2048)
    # eager attention keeps fp32 probabilities + a bf16 copy: (4 + 2) * heads * seq^2 * batch per layer
    assert eager.components["activations"] - sdpa.components["activations"] == 32 * 6 * 32 * 2048 ** 2 * 4


def test_reference_shapes_have_their_published_parameter_counts():
    assert E.SHAPES["llama-7b"].params() == 6_738_415_616        # Llama-2-7b-hf
    assert E.SHAPES["llama-13b"].params() == 13_015_864_320      # Llama-2-13b-hf
    assert E.SHAPES["llama-1b"].params() == 1_235_814_400        # Llama-3.2-1B
    assert E.SHAPES["llama-70b"].params() == 70_553_706_496      # Llama-3.1-70B
    assert E.SHAPES["smollm2-135m"].params() == 134_515_008
    # what peft prints for these with r=16, all-linear
    assert E.SHAPES["llama-7b"].lora_params(16) == 39_976_960
    assert E.SHAPES["smollm2-135m"].lora_params(16) == 4_884_480  # = the shipped sarcasm run's trainable_params


def test_qlora_7b_lands_in_the_known_range():
    e = E.estimate("llama-7b", "qlora", batch_size=1, seq_len=512, gradient_checkpointing=True)
    # 6.5B linear weights at ~0.52 bytes + 262M embedding/head parameters upcast to fp32
    assert 3.5 * GiB < e.components["weights"] < 4.5 * GiB
    assert 4.5 * GiB < e.total < 8 * GiB  # QLoRA of a 7B model fits a 12-16 GB card at batch 1


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], ["down_proj", "o_proj", "k_proj"]])
def test_lora_counts_equal_what_peft_reports_on_the_tiny_model(tiny_model_dir, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = E.shape_of(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    assert shape.params() == model.num_parameters()
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"))
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert shape.lora_params(8, targets) == trainable
    est = E.estimate(str(tiny_model_dir), "qlora", 2, 32, r=8, target_modules=targets)
    assert est.trainable == trainable and est.params == total - trainable


def test_check_fits_names_the_numbers_and_the_fix():
    e = E.estimate("llama-70b", "qlora", batch_size=8, seq_len=512)
    message = E.check_fits(e, 23.4 * GiB, "cuda:0")
    assert message.startswith(f"QLoRA of llama-70b (batch 8 x 512 tokens) needs ~{e.gib():.1f} GiB (weights "
                              f"{e.gib('weights'):.1f}, ")
    assert "but cuda:0 has 23.4 GiB free; use a smaller model (the 4-bit weights alone do not fit)" in message
    small = E.estimate("llama-7b", "qlora", batch_size=8, seq_len=512)
    advice = E.check_fits(small, 23.4 * GiB, "cuda:0")
    assert advice.endswith("use gradient checkpointing, a smaller batch_size or a shorter max_length")
    lora = E.check_fits(E.estimate("llama-7b", "lora", 8, 512, gradient_checkpointing=True), 10 * GiB, "cuda:0")
    assert lora.endswith("use QLoRA, a smaller batch_size or a shorter max_length")
    assert E.check_fits(small, small.total + 1, "cuda:0") is None


def test_table_and_command_on_cpu():
    text, fits = E.command(["llama-1b", "smollm2-135m"], ["qlora", "full"], batch_size=2, seq_len=64, device="cpu")
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["model", "method", "batch", "x", "seq"]
    assert sum(line.startswith(("llama-1b ", "smollm2-135m ")) for line in lines) == 4
    assert any("fits in the" in line or "needs ~" in line for line in lines)
    assert "fp32" in lines[-1]  # the harness trains in fp32 on CPU
    assert isinstance(fits, bool)
    everything, _ = E.command(["all"], ["qlora"], device="cpu")
    assert all(name in everything for name in E.CLASSES)


def test_available_memory_on_cpu_is_plausible():
    free = E.available_memory("cpu")
    assert 64 * 1024 ** 2 < free < 64 * 1024 ** 4


def test_bad_inputs_are_refused_with_the_choices(tmp_path):
    with pytest.raises(HarnessError, match="method must be one of qlora, lora, full"):
        E.estimate("llama-7b", "prefix")
    with pytest.raises(HarnessError, match="not linear layers of a Llama-style model"):
        E.estimate("llama-7b", "lora", target_modules=["c_attn"])
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_embd": 768}')
    with pytest.raises(HarnessError, match="covers Llama-style decoders"):
        E.estimate(str(tmp_path), "qlora")
