"""The reference arm's model does not depend on how many threads BLAS or XGBoost use (the cause of the
cross-machine drift: PCA's randomized float32 solver followed the BLAS kernel and thread count), nor on the
process it is fitted in (the xgb stage fits folds side by side)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from stages.lib.core.config import load_params
from stages.lib.reference.model import make_model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(1200, 384)).astype(np.float32) @ rng.normal(size=(384, 384)).astype(np.float32)
    handcrafted = rng.normal(size=(1200, 5)).astype(np.float32)
    x = np.hstack([embeddings, handcrafted])
    y = np.column_stack([x[:, :3].sum(1), x[:, -1]]) + rng.normal(size=(1200, 2))
    return x[:1000], y[:1000], x[1000:]


def predict(data, blas_threads: int, xgb_jobs: int) -> np.ndarray:
    x, y, x_eval = data
    cfg = load_params().xgb.model_copy(update={"n_estimators": 40, "n_jobs": xgb_jobs})
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        model = make_model(cfg, seed=3, embedding_columns=list(range(384))).fit(x, y)
        return model.predict(x_eval)


def test_predictions_do_not_depend_on_thread_counts(data):
    one = predict(data, blas_threads=1, xgb_jobs=1)
    assert np.array_equal(one, predict(data, blas_threads=2, xgb_jobs=2))
    assert np.array_equal(one, predict(data, blas_threads=2, xgb_jobs=1))


def test_predictions_do_not_depend_on_the_process_that_fits_them(data):
    """The xgb stage fits folds in `fold_workers` loky processes (one thread each): same numbers as in-process."""
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=1):
        in_workers = Parallel(n_jobs=2)(delayed(predict)(data, 1, 1) for _ in range(2))
    here = predict(data, blas_threads=2, xgb_jobs=1)
    assert all(np.array_equal(here, other) for other in in_workers)
