"""The training script exports any Hugging Face sequence-classification checkpoint; offline, a small randomly
initialised DistilBERT stands in for the real distilbert-base-uncased-finetuned-sst-2-english."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from processors.text_sentiment import TextClassifier, TextSentimentOptions


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


def test_export_of_a_distilbert_checkpoint_serves_in_the_text_classifier(tmp_path: Path) -> None:
    checkpoint = tiny_distilbert(tmp_path)
    out = tmp_path / "exported"
    subprocess.run(
        [sys.executable, "-m", "models.text.train_sst2", "export", str(checkpoint), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert {p.name for p in out.iterdir()} >= {"model.int8.onnx", "tokenizer.json", "SHA256SUMS"}
    results = TextClassifier(TextSentimentOptions(model_dir=out)).classify(["a fine film", "it was a dull mess"])
    assert all(r.has_text and abs(r.negative + r.neutral + r.positive - 1) < 1e-6 for r in results)
