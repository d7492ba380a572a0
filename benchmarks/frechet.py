"""Seconds for a Frechet distance on 10k x 2048 features: streaming statistics and the distance, timed apart.

    /work/venv/bin/python benchmarks/frechet.py [--num-features 10000] [--dim 2048] [--chunk 500]

Features are synthetic (correlated Gaussians, float32 like Inception pool3 output); the distance cost depends only
on the dimension. Also times pytorch-fid's scipy.linalg.sqrtm route for comparison unless --skip-sqrtm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg

from jaxrep.metrics import FeatureStatistics, frechet_distance


def _synthetic_features(rng, num_features, dim, chunk):
    """Yields float32 chunks (chunk, dim) of correlated, non-negative-mean features."""
    mixing = (rng.normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32)
    for start in range(0, num_features, chunk):
        rows = min(chunk, num_features - start)
        yield rng.normal(size=(rows, dim)).astype(np.float32) @ mixing + 0.5


def _sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-features", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--skip-sqrtm", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    statistics = []
    for _ in range(2):
        chunks = list(_synthetic_features(rng, args.num_features, args.dim, args.chunk))
        start = time.perf_counter()
        stats = FeatureStatistics.empty(args.dim)
        for chunk in chunks:
            stats = stats.update(chunk)
        mu, sigma = stats.mean, stats.covariance
        print(f"statistics  {args.num_features} x {args.dim} in chunks of {args.chunk}: "
              f"{time.perf_counter() - start:.2f} s")
        statistics.append((mu, sigma))

    (mu1, sigma1), (mu2, sigma2) = statistics
    start = time.perf_counter()
    distance = frechet_distance(mu1, sigma1, mu2, sigma2)
    elapsed = time.perf_counter() - start
    print(f"frechet_distance (eigh, symmetric form), D={args.dim}: {elapsed:.2f} s  FD={distance:.6f}")
    if not args.skip_sqrtm:
        start = time.perf_counter()
        reference = _sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2)
        print(f"scipy.linalg.sqrtm route (pytorch-fid), D={args.dim}: {time.perf_counter() - start:.2f} s  "
              f"FD={reference:.6f}")


if __name__ == "__main__":
    main()
