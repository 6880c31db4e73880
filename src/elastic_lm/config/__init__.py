"""One validated configuration shared by every command: YAML file plus ``--set key=value`` overrides."""

from elastic_lm.config.loading import apply_overrides, load_config, validate_config
from elastic_lm.config.schema import Config

__all__ = ["Config", "apply_overrides", "load_config", "validate_config"]
