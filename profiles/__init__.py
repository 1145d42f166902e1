"""``edge_ls.profiles``: the deployment tiers, one TOML file per tier beside this file, and their typed
loader (:mod:`edge_ls.profiles.profile`).

A profile says how a tier runs: which models, tile size, batch, overlap, precision, the backend
preference order, thresholds, optional outputs, the accuracy budget quantization must stay within, and
the TensorRT shape ranges. It is runtime-level configuration: the runtime, engines, export and the
benchmarks all read it, and it imports nothing above the runtime.
"""

from edge_ls.profiles.profile import (
    DEFAULT_ACCURACY_BUDGET_F1,
    HARDWARE_COMPATIBILITY,
    KNOWN_BACKENDS,
    MODEL_ROLES,
    PRECISIONS,
    PROFILES_DIR,
    ROLES,
    Profile,
    ShapeRange,
    TensorRTOptions,
    list_profiles,
    load_all,
    load_profile,
    missing_tier_hint,
    parse_profile,
    profile_path,
)

__all__ = [
    "DEFAULT_ACCURACY_BUDGET_F1",
    "HARDWARE_COMPATIBILITY",
    "KNOWN_BACKENDS",
    "MODEL_ROLES",
    "PRECISIONS",
    "PROFILES_DIR",
    "ROLES",
    "Profile",
    "ShapeRange",
    "TensorRTOptions",
    "list_profiles",
    "load_all",
    "load_profile",
    "missing_tier_hint",
    "parse_profile",
    "profile_path",
]
