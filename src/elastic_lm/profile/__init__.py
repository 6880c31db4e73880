"""Latency on the user's hardware: profile sub-networks, fit predictors, report their error.

```python
import random
from elastic_lm.space import preset
from elastic_lm.profile import ProfileSettings, build_supernet, fit_predictors
space = preset("elm"); supernet = build_supernet(space)
result = fit_predictors(supernet, space, ProfileSettings(seq_len=128), n_train=48, n_held_out=16)
result.predictors["regressor"].predict_ms(space.middle())
```
"""

from __future__ import annotations

from elastic_lm.profile.evaluate import (
    LatencyPredictor,
    evaluate,
    load_predictor,
    machine_description,
    prediction_errors,
    predictor_from_dict,
    recheck,
    save_predictors,
)
from elastic_lm.profile.lookup import LookupTablePredictor
from elastic_lm.profile.measure import measure_architectures, profile_subnetworks, records_for
from elastic_lm.profile.records import ProfileRecord, ProfileSettings
from elastic_lm.profile.regressor import RegressorPredictor, architecture_features
from elastic_lm.profile.run import ProfileResult, fit_predictors
from elastic_lm.profile.supernet import (
    build_supernet,
    load_supernet,
    supernet_for_space,
    supernet_from_config,
)

__all__ = [
    "LatencyPredictor",
    "LookupTablePredictor",
    "ProfileRecord",
    "ProfileResult",
    "ProfileSettings",
    "RegressorPredictor",
    "architecture_features",
    "build_supernet",
    "evaluate",
    "fit_predictors",
    "load_predictor",
    "load_supernet",
    "machine_description",
    "measure_architectures",
    "prediction_errors",
    "predictor_from_dict",
    "profile_subnetworks",
    "recheck",
    "records_for",
    "save_predictors",
    "supernet_for_space",
    "supernet_from_config",
]
