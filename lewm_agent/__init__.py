"""lewm_agent: a LeWorldModel (JEPA + SIGReg) behind a Gymnasium planning agent."""
import lewm_envs as _envs  # noqa: F401  registers the lewm/* Gymnasium environments

from .agent import LeWMAgent
from .checkpoint import resolve_checkpoint, shipped_checkpoints
from .config import PRESETS, ModelConfig, PlannerConfig, preset
from .losses import pred_loss, sigreg
from .planner import CEMPlanner
from .pretrained import make_env
from .world_model import WorldModel

__version__ = "0.1.0"
__all__ = ["LeWMAgent", "make_env", "resolve_checkpoint", "shipped_checkpoints", "CEMPlanner", "ModelConfig", "PlannerConfig", "PRESETS", "preset", "WorldModel",
           "sigreg", "pred_loss"]
