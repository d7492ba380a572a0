"""Linear-probe accuracy of frozen features: the standard read-out of how linearly decodable a label is from a
representation (REPA reports it for the SiT's aligned block; DINOv2 for its encoders).

A multinomial logistic regression (scikit-learn, L-BFGS, L2 strength `1 / regularization`) on standardised
features, fitted on one split and scored on another.
"""

from __future__ import annotations

import numpy as np


def linear_probe_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                          test_labels: np.ndarray, *, regularization: float = 1.0, max_iter: int = 1000) -> float:
    """Test accuracy of a logistic regression fitted on (train_features (N, D), train_labels (N,)).

    Features are standardised with the training split's mean and std (zero-variance columns left at 0).
    Returns the fraction of `test_labels` (M,) predicted from `test_features` (M, D).
    """
    from sklearn.linear_model import LogisticRegression

    train_features, test_features = np.asarray(train_features, np.float64), np.asarray(test_features, np.float64)
    if train_features.ndim != 2 or test_features.shape[1:] != train_features.shape[1:]:
        raise ValueError(f"features must be (N, D) and (M, D), got {train_features.shape} and {test_features.shape}")
    mean, std = train_features.mean(0), train_features.std(0)
    std = np.where(std > 0, std, 1.0)
    classifier = LogisticRegression(C=regularization, max_iter=max_iter)
    classifier.fit((train_features - mean) / std, np.asarray(train_labels))
    return float(np.mean(classifier.predict((test_features - mean) / std) == np.asarray(test_labels)))
