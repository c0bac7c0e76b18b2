"""lewm_agent: a LeWorldModel (JEPA + SIGReg) behind a Gymnasium planning agent."""
import envs as _envs  # noqa: F401  registers the lewm/* Gymnasium environments

from .agent import LeWMAgent
from .config import PRESETS, ModelConfig, PlannerConfig, preset
from .losses import pred_loss, sigreg
from .planner import CEMPlanner
from .world_model import WorldModel

__version__ = "0.1.0"
__all__ = ["LeWMAgent", "CEMPlanner", "ModelConfig", "PlannerConfig", "PRESETS", "preset", "WorldModel",
           "sigreg", "pred_loss"]
