"""selection_mode cleanlab (sspa_hf/modes/cleanlab.py): cleanlab's verdict on out-of-sample probabilities."""

from __future__ import annotations

import numpy as np
from datasets import Value
from helpers import label_table

from sspa_hf.modes.cleanlab import cleanlab_issues, with_verdict


def test_cleanlab_flags_auxiliary_labels_its_probabilities_contradict():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), labels] = 0.9
    wrong = np.arange(200, 230)  # auxiliary rows whose given label the model firmly rejects
    labels[wrong] = (labels[wrong] + 1) % 3
    result = cleanlab_issues(probs, labels, is_target=np.arange(300) < 100)
    assert not result.clean[wrong].any()
    assert result.clean[:200].all() and result.clean[230:].all()
    assert (result.score[wrong] < 0).all() and (result.score[:200] == 0).all()
    columns = with_verdict(label_table(300), result)
    assert columns["clean"] == result.clean.tolist() and columns.features["clean"] == Value("bool")
