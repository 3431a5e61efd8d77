"""The training script exports any Hugging Face sequence-classification checkpoint; offline, a small randomly
initialised DistilBERT stands in for the real distilbert-base-uncased-finetuned-sst-2-english."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moodstream.processors.text_sentiment import TextClassifier, TextSentimentOptions


def tiny_distilbert(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "mess", "it", "was"]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    checkpoint = folder / "checkpoint"
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(checkpoint)
    config = DistilBertConfig(
        vocab_size=len(words), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64, num_labels=2
    )
    DistilBertForSequenceClassification(config).save_pretrained(checkpoint)
    return checkpoint


@pytest.mark.stack  # starts its own processes
def test_export_of_a_distilbert_checkpoint_serves_in_the_text_classifier(tmp_path: Path) -> None:
    checkpoint = tiny_distilbert(tmp_path)
    out = tmp_path / "exported"
    subprocess.run(
        [sys.executable, "-m", "moodstream.models.text.train_sst2", "export", str(checkpoint), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert {p.name for p in out.iterdir()} >= {"model.int8.onnx", "tokenizer.json", "SHA256SUMS"}
    results = TextClassifier(TextSentimentOptions(model_dir=out)).classify(["a fine film", "it was a dull mess"])
    assert all(r.has_text and abs(r.negative + r.neutral + r.positive - 1) < 1e-6 for r in results)


def test_neutral_training_text_is_lexicon_free_and_polar_text_takes_vaders_side(tmp_path: Path) -> None:
    from moodstream.models.text.wordnet_text import (
        NEGATIVE,
        POSITIVE,
        lexically_neutral,
        lexically_polar,
        sentiment_lexicon,
        wordnet_examples,
        wordnet_lemmas,
    )

    (tmp_path / "data.noun").write_text(
        "  1 This software and associated documentation ...\n"
        '00001 03 n 01 door 0 000 | a swinging barrier; "the dogs sat by the door"; "a wonderful, happy door"\n'
    )
    (tmp_path / "data.verb").write_text('00002 29 v 01 hate 0 000 | dislike intensely; "I hate the terrible noise"\n')
    (tmp_path / "data.adj").write_text("")
    (tmp_path / "data.adv").write_text("")
    for part in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"index.{part}").write_text("  1 licence\nbus_station n 1 0 1 0 00003\nhappy_hour n 1 0 1 0 1\n")
    examples = wordnet_examples(tmp_path)
    assert examples == ["the dogs sat by the door", "a wonderful, happy door", "I hate the terrible noise"]
    lexicon = sentiment_lexicon()
    assert lexically_neutral(examples, lexicon) == ["the dogs sat by the door"]
    assert lexically_neutral(wordnet_lemmas(tmp_path), lexicon) == ["bus station"] * 4
    assert lexically_polar(examples, lexicon, 0.5) == [
        ("a wonderful, happy door", POSITIVE),
        ("I hate the terrible noise", NEGATIVE),
    ]


def test_fine_tune_fits_a_tiny_model_to_its_rows(tmp_path: Path) -> None:
    import random

    import torch
    from transformers import DistilBertForSequenceClassification

    from moodstream.models.text.train_sst2 import TrainOptions, fine_tune

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification.from_pretrained(tiny_distilbert(tmp_path))
    encoded = [[2, 5, 6, 7, 3], [2, 10, 11, 8, 9, 3], [2, 5, 7, 3]]  # "a fine film", "it was dull mess", "a film"
    labels = [1, 0, 1]

    def loss_on_rows() -> float:
        with torch.no_grad():
            logits = [model(input_ids=torch.tensor([encoded[i]])).logits for i in (0, 1)]
        return float(torch.nn.functional.cross_entropy(torch.cat(logits), torch.tensor(labels[:2])))

    model.eval()
    before = loss_on_rows()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    options = TrainOptions(batch_size=2, warmup_fraction=0.1, bucket_batches=2)
    steps = fine_tune(model, optimizer, encoded, labels, [0, 1], 40, options, random.Random(1))
    assert steps == 40 and not model.training
    assert loss_on_rows() < before / 4  # random initial weights may already guess right; they cannot fit
    with torch.no_grad():
        predicted = [int(model(input_ids=torch.tensor([encoded[i]])).logits.argmax()) for i in (0, 1)]
    assert predicted == [1, 0]
