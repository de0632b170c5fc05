"""`sdeval export`: results in other tools' formats. model_index.py: the Hugging Face model card's `model-index`
(card.py writes it into a card's front matter)."""
