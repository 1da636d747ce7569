"""benchmarks/init_features.py: pairwise cosine similarity of pooled features at initialisation."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def init_features(load_script):
    return load_script("init_features")


def test_similarity_is_the_mean_over_pairs(init_features):
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # pairs: (0,1) 0, (0,2) 1/sqrt2, (1,2) 1/sqrt2
    assert init_features.similarity(feats) == pytest.approx((2 / 2**0.5) / 3)


def test_a_run_on_real_images_writes_one_row_per_model_and_seed(
    init_features, shared_data, tmp_path, monkeypatch
):
    out = tmp_path / "init.json"
    argv = ["init_features.py", "--data-path", str(shared_data / "cifar10-mini"), "--images", "4",
            "--seeds", "0", "--models", "paper", "bn", "--json", str(out)]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    init_features.main()
    result = json.loads(out.read_text())
    assert result["images"] == 4
    assert [(row["model"], row["seed"]) for row in result["rows"]] == [("paper", 0), ("bn", 0)]
    for row in result["rows"]:
        assert -1.0 <= row["mean_pairwise_cosine"] <= 1.0 and row["mean_norm"] > 0
