import json

import pytest
import torch
from safetensors.torch import save_file
from support import reference

from mechinterp_arith import CheckpointError, ModelConfig, Task, build_model, load, save_checkpoint

TASK = Task("add", 2)
MCFG = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, seed=5)


@pytest.fixture
def ckpt_dir(tmp_path):
    model = build_model(MCFG)
    return save_checkpoint(tmp_path / "tiny", model, TASK, MCFG, {"steps": 1}, [{"step": 1, "loss": 2.0}], command="x")


def test_round_trip_keeps_weights_task_and_history(ckpt_dir):
    ckpt = load(ckpt_dir, device="cpu")
    fresh = build_model(MCFG)
    for (k, v), (k2, v2) in zip(ckpt.model.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert ckpt.task == TASK and ckpt.model_config == MCFG
    assert ckpt.history == [{"step": 1, "loss": 2.0}] and not ckpt.model.training
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert json.loads((ckpt_dir / "config.json").read_text())["package_version"]


def test_prompt_tokens_and_predict_shapes(ckpt_dir):
    ckpt = load(ckpt_dir, device="cpu")
    tokens = ckpt.prompt_tokens([12, 3], torch.tensor([45, 6]))
    assert tokens.dtype == torch.long and tokens.shape == (2, 10)
    assert tokens[0].tolist() == [0, 0, 0, 1, 2, 0, 0, 0, 4, 5]
    # the answers a plain greedy loop reads from the model built fresh from the same config
    a, b = torch.arange(0, 100, 3), torch.arange(99, -1, -3)
    expected = reference.greedy_answers(build_model(MCFG).eval(), TASK, a, b)
    assert ckpt.predict(a, b).tolist() == expected.tolist()


def test_truncated_weights_are_reported(ckpt_dir):
    f = ckpt_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(ckpt_dir, device="cpu")


def test_garbage_weights_are_reported(ckpt_dir):
    (ckpt_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(ckpt_dir, device="cpu")


def test_weights_that_disagree_with_config(ckpt_dir):
    other = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=32, d_mlp=32)
    save_file({k: v.contiguous() for k, v in build_model(other).state_dict().items()}, ckpt_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="has shape"):
        load(ckpt_dir, device="cpu")
    tensors = {k: v.contiguous() for k, v in build_model(MCFG).state_dict().items()}
    tensors.pop("blocks.0.attn.q.weight")
    save_file(tensors, ckpt_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing \\['blocks.0.attn.q.weight'\\]"):
        load(ckpt_dir, device="cpu")


def test_bad_config_json(ckpt_dir):
    (ckpt_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(ckpt_dir, device="cpu")
    (ckpt_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match="holds no config.json"):
        load(ckpt_dir, device="cpu")


def test_config_that_does_not_fit_its_task(ckpt_dir):
    config = json.loads((ckpt_dir / "config.json").read_text())
    config["task"]["format"] = "plain"
    (ckpt_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not fit"):
        load(ckpt_dir, device="cpu")


def test_pickles_are_refused_with_a_pointer_to_import(tmp_path):
    f = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, f)
    with pytest.raises(CheckpointError, match="pickled PyTorch file.*import"):
        load(f, device="cpu")


def test_unknown_name_lists_shipped():
    with pytest.raises(CheckpointError, match="shipped: .*add3"):
        load("add33", device="cpu")


def test_failed_write_leaves_previous_checkpoint_intact(ckpt_dir, monkeypatch):
    before = (ckpt_dir / "model.safetensors").read_bytes()
    import mechinterp_arith.core.checkpoint as cp

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cp, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ckpt_dir, build_model(MCFG), TASK, MCFG)
    assert (ckpt_dir / "model.safetensors").read_bytes() == before
    assert [p.name for p in ckpt_dir.parent.iterdir()] == ["tiny"]  # no temporary left behind


def test_shipped_checkpoints_record_their_command():
    from mechinterp_arith.core.checkpoint import shipped_checkpoint_dirs

    shipped = [p for p in shipped_checkpoint_dirs()[0].iterdir() if (p / "config.json").is_file()]
    assert shipped
    for p in shipped:
        config = json.loads((p / "config.json").read_text())
        assert config["command"].startswith("mechinterp-arith "), p
        assert sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) < 8_000_000, p
