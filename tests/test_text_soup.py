"""Averaging fine-tuned runs (models/text/soup.py): the mean of the members' weights, as a loadable checkpoint that
still carries the tokenizer; tiny randomly initialised BERTs stand in for the real runs."""

from __future__ import annotations

from pathlib import Path

import pytest


def tiny_run(folder: Path, seed: int) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                        num_labels=3)  # fmt: skip
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for parameter in model.parameters():  # biases start at zero: move every weight, as fine-tuning does
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"stand-in": true}')
    return folder


def test_the_soup_is_the_mean_of_its_members_and_keeps_the_tokenizer(tmp_path: Path) -> None:
    from moodstream.models.text.soup import average_checkpoints
    from moodstream.models.text.train_conversation import build_model

    members = [tiny_run(tmp_path / f"run{i}", seed=i) for i in range(3)]
    average_checkpoints(members, tmp_path / "soup")
    states = [build_model(str(m)).state_dict() for m in members]
    soup = build_model(str(tmp_path / "soup")).state_dict()
    for name in ("bert.encoder.layer.0.attention.self.query.weight", "classifier.weight", "classifier.bias"):
        assert not states[0][name].equal(states[1][name])  # the runs differ, so the check means something
        assert soup[name].numpy() == pytest.approx(sum(s[name] for s in states).numpy() / 3, abs=1e-6)
    assert (tmp_path / "soup" / "tokenizer.json").read_text() == '{"stand-in": true}'
