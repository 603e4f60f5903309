"""The checkpoint layout: file names, legacy tensor names, adapters for every task, and errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from embedder import CheckpointError, JinaV4Embedder, Task

TASKS = [t.value for t in Task]
LAYER_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]  # fmt: skip
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst / "ckpt"))


def _load(folder: Path) -> JinaV4Embedder:
    return JinaV4Embedder.from_pretrained(folder, device="cpu", dtype="float32")


def test_files_and_legacy_names(tiny_checkpoint: Path) -> None:
    names = {p.relative_to(tiny_checkpoint).as_posix() for p in tiny_checkpoint.rglob("*")}
    for required in ["config.json", "preprocessor_config.json", "tokenizer.json",
                     "tokenizer_config.json", "vocab.json", "merges.txt", *SHARDS,
                     "model.safetensors.index.json", "adapters/adapter_config.json",
                     "adapters/adapter_model.safetensors"]:  # fmt: skip
        assert required in names
    index = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    assert set(index["weight_map"].values()) == set(SHARDS)
    assert "model.embed_tokens.weight" in keys and "model.norm.weight" in keys
    assert "model.layers.1.self_attn.q_proj.bias" in keys
    assert "visual.merger.mlp.0.weight" in keys and "visual.patch_embed.proj.weight" in keys
    assert {"multi_vector_projector.weight", "multi_vector_projector.bias"} <= keys
    assert not any("language_model" in k or k.startswith("model.visual") for k in keys)
    assert "lm_head.weight" not in keys
    for shard in SHARDS:
        with safe_open(tiny_checkpoint / shard, framework="pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


def test_adapter_keys_cover_every_task(tiny_checkpoint: Path) -> None:
    cfg = json.loads((tiny_checkpoint / "adapters/adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"]) == (32, 32)
    tensors = load_file(tiny_checkpoint / "adapters/adapter_model.safetensors")
    layers = json.loads((tiny_checkpoint / "config.json").read_text())["num_hidden_layers"]
    assert len(tensors) == layers * 7 * 3 * 2 + 3 * 2
    for task in TASKS:
        for i in range(layers):
            for mod in LAYER_MODULES:
                prefix = f"base_model.model.model.language_model.layers.{i}.{mod}"
                a = tensors[f"{prefix}.lora_A.{task}.weight"]
                b = tensors[f"{prefix}.lora_B.{task}.weight"]
                assert a.shape[0] == 32 and b.shape[1] == 32
                assert b.abs().sum() > 0  # non-zero: the task really changes the model
        a = tensors[f"base_model.model.multi_vector_projector.lora_A.{task}.weight"]
        b = tensors[f"base_model.model.multi_vector_projector.lora_B.{task}.weight"]
        assert a.shape == (32, 64) and b.shape == (128, 32)


def test_config_token_ids_match_tokenizer(tiny_checkpoint: Path, tiny_embedder) -> None:
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    tok = tiny_embedder.tokenizer
    expected = {"<|image_pad|>": "image_token_id", "<|vision_start|>": "vision_start_token_id",
                "<|vision_end|>": "vision_end_token_id", "<|video_pad|>": "video_token_id",
                "<|endoftext|>": "bos_token_id", "<|im_end|>": "eos_token_id"}  # fmt: skip
    for token, key in expected.items():
        assert tok.convert_tokens_to_ids(token) == cfg[key], token
    assert cfg["vision_end_token_id"] == cfg["vision_start_token_id"] + 1
    assert cfg["image_token_id"] == cfg["vision_start_token_id"] + 3  # as in Qwen (151652/151655)
    assert max(tok.get_vocab().values()) < cfg["vocab_size"]
    assert tiny_embedder.matryoshka_dims == (16, 32, 64)


def test_weights_land_under_current_names(tiny_checkpoint: Path, tiny_embedder) -> None:
    model = tiny_embedder._model
    state = model.state_dict()
    index = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())
    checked = 0
    for key, shard in index["weight_map"].items():
        with safe_open(tiny_checkpoint / shard, framework="pt") as f:
            stored = f.get_tensor(key).float()
        new = re.sub(r"^model\.", "model.language_model.", key)
        new = re.sub(r"^visual\.", "model.visual.", new)
        if re.search(r"layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$", new):
            continue  # LoRA-merged in the live model; checked against W0 + B @ A below
        if new.startswith("multi_vector_projector.weight"):
            continue
        assert torch.equal(state[new], stored), key
        checked += 1
    assert checked > 20


def test_lora_merge_is_base_plus_b_at_a(tiny_checkpoint: Path, tiny_embedder) -> None:
    adapters = load_file(tiny_checkpoint / "adapters/adapter_model.safetensors")
    shard = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    for task in TASKS:
        tiny_embedder._lora.activate(Task(task))
        for module, legacy in [
            ("model.language_model.layers.1.mlp.down_proj", "model.layers.1.mlp.down_proj"),
            ("multi_vector_projector", "multi_vector_projector"),
        ]:
            with safe_open(tiny_checkpoint / shard[f"{legacy}.weight"], framework="pt") as f:
                w0 = f.get_tensor(f"{legacy}.weight").float()
            a = adapters[f"base_model.model.{module}.lora_A.{task}.weight"].float()
            b = adapters[f"base_model.model.{module}.lora_B.{task}.weight"].float()
            live = tiny_embedder._model.get_submodule(module).weight
            torch.testing.assert_close(live, w0 + b @ a, rtol=0, atol=1e-6)


def test_missing_shard_names_the_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / SHARDS[1]).unlink()
    with pytest.raises(CheckpointError, match=SHARDS[1]):
        _load(folder)


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "adapter_config.json"])
def test_missing_adapter_file_names_the_file(
    tiny_checkpoint: Path, tmp_path: Path, name: str
) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / "adapters" / name).unlink()
    with pytest.raises(CheckpointError, match=re.escape(name)):
        _load(folder)


def _rewrite_shard(folder: Path, shard: str, edit) -> None:
    tensors = load_file(folder / shard)
    edit(tensors)
    save_file(tensors, str(folder / shard), metadata={"format": "pt"})
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard}
    index["weight_map"].update({k: shard for k in tensors})
    index_path.write_text(json.dumps(index))


def test_unknown_backbone_key_is_listed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    extra = "model.layers.0.self_attn.rotary.weird"
    _rewrite_shard(folder, SHARDS[0], lambda t: t.update({extra: torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=re.escape(extra)):
        _load(folder)


def test_missing_backbone_key_is_listed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    tensors = load_file(folder / SHARDS[1])
    victim = sorted(tensors)[0]
    _rewrite_shard(folder, SHARDS[1], lambda t: t.pop(victim))
    with pytest.raises(CheckpointError, match="missing key") as err:
        _load(folder)
    assert victim in str(err.value)


def test_lm_head_is_ignored_not_an_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    _rewrite_shard(folder, SHARDS[0], lambda t: t.update({"lm_head.weight": torch.zeros(2, 2)}))
    _load(folder)


def test_adapter_key_errors_are_listed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    path = folder / "adapters/adapter_model.safetensors"
    tensors = load_file(path)
    gone = "base_model.model.model.language_model.layers.0.self_attn.v_proj.lora_B.code.weight"
    del tensors[gone]
    strange = "base_model.model.model.visual.blocks.0.attn.qkv.lora_A.code.weight"
    tensors[strange] = torch.zeros(32, 32)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError) as err:
        _load(folder)
    assert gone in str(err.value) and strange in str(err.value)


def test_legacy_adapter_prefix_is_accepted(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_checkpoint, tmp_path)
    path = folder / "adapters/adapter_model.safetensors"
    tensors = {k.replace("model.language_model.layers", "model.layers"): v
               for k, v in load_file(path).items()}  # fmt: skip
    save_file(tensors, str(path))
    a = _load(folder).encode_text(["same weights"], task="code").dense
    b = _load(tiny_checkpoint).encode_text(["same weights"], task="code").dense
    assert (a == b).all()


def test_not_a_folder_nor_hub_id(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        JinaV4Embedder.from_pretrained(tmp_path / "nope" / "deeper", device="cpu")
