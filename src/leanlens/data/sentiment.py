"""A short-text sentiment task from the VADER lexicon, and the Dataset that keeps its texts.

VADER (Hutto & Gilbert, 2014; the `vadersentiment` package) lists 7,520 words, emoticons and
slang, each rated by ten people from −4 (extremely negative) to +4 (extremely positive). The
task keeps the entries whose mean rating is at least `MARGIN` away from neutral (3,246
negative and 2,558 positive words). Held-out entries must be new words, not inflections of
training ones, so the split puts every entry sharing its first `STEM` letters on the same side
("abandon", "abandoned" and "abandonment" together).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leanlens.data.dataset import Dataset
from leanlens.errors import BadInput, MissingCapability

MARGIN = 1.0  # |mean rating| below this is near-neutral: dropped
STEM = 5  # letters that group inflections of one word on one side of the split
TEST_SHARE = 20  # percent of the stems held out
MAX_LENGTH = 16  # tokens a text, [CLS] and [SEP] included: every entry fits
CLASSES = ("negative", "positive")
SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class TextDataset(Dataset):
    """A Dataset whose x are token ids and which keeps the raw `texts`, one a sample."""

    texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "texts", tuple(self.texts))
        if len(self.texts) != len(self.y):
            raise BadInput(f"{len(self.texts)} texts for {len(self.y)} samples", "give one text a sample")

    def subset(self, indices) -> TextDataset:
        picked = super().subset(indices)  # checks the indices
        positions = np.arange(len(self))[np.asarray(indices)]
        return TextDataset(picked.x, picked.y, None, picked.name, picked.classes,
                           texts=tuple(self.texts[i] for i in positions))


def vader_sentiment(split: str = "all", max_length: int = MAX_LENGTH) -> TextDataset:
    """The VADER words as a two-class task: token ids of the encoder's tokenizer, label 1 = positive.

    `split` is "train", "test" (the held-out 20 % of stems, see the module's note) or "all".
    """
    if split not in SPLITS:
        raise BadInput(f"split={split!r}", "use 'train', 'test' or 'all'")
    # the tokenizer needs the text extra: imported only when the task is asked for
    from leanlens.text.encoder import tokenize

    words, ratings = _lexicon()
    keep = np.abs(ratings) >= MARGIN
    if split != "all":
        held_out = np.array([_held_out(word) for word in words])
        keep &= held_out if split == "test" else ~held_out
    texts = [word for word, kept in zip(words, keep) if kept]
    labels = (ratings[keep] > 0).astype(np.int64)
    return TextDataset(tokenize(texts, max_length), labels, name="vader-sentiment", classes=CLASSES,
                       texts=tuple(texts))


def _held_out(word: str) -> bool:
    """Whether a word's stem is in the test part: a fixed hash, the same on every machine and run."""
    return zlib.crc32(word[:STEM].lower().encode("utf-8")) % 100 < TEST_SHARE


def _lexicon() -> tuple[list[str], np.ndarray]:
    """The lexicon's entries and their mean ratings, read from the vadersentiment package."""
    try:
        import vaderSentiment
    except ImportError:
        raise MissingCapability("the VADER sentiment task needs the package 'vadersentiment', which is not installed",
                                "pip install 'leanlens[text]'") from None
    words, ratings = [], []
    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:  # token, mean rating, standard deviation, the ten ratings
            words.append(fields[0])
            ratings.append(float(fields[1]))
    # 14 tokens are listed twice, some with opposite ratings ("d:" at -2.9 and +1.2): neither is kept
    counts = Counter(words)
    once = [i for i, word in enumerate(words) if counts[word] == 1]
    return [words[i] for i in once], np.asarray(ratings)[once]
