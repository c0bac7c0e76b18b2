"""lewm_agent: a LeWorldModel (JEPA + SIGReg) behind a Gymnasium planning agent."""
from .config import PRESETS, ModelConfig, PlannerConfig, preset
from .losses import pred_loss, sigreg
from .world_model import WorldModel

__version__ = "0.1.0"
__all__ = ["ModelConfig", "PlannerConfig", "PRESETS", "preset", "WorldModel", "sigreg", "pred_loss"]

import envs as _envs  # noqa: E402,F401  registers the lewm/* Gymnasium environments
