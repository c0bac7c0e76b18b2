"""lewm_agent: a LeWorldModel (JEPA + SIGReg) behind a Gymnasium planning agent."""
import lewm_envs as _envs  # noqa: F401  registers the lewm/* Gymnasium environments

from .checkpoint import make_env, resolve_checkpoint, shipped_checkpoints
from .config import PRESETS, ModelConfig, PlannerConfig, preset
from .model.losses import pred_loss, sigreg
from .model.world_model import WorldModel
from .planning.agent import LeWMAgent
from .planning.planner import CEMPlanner
from .version import __version__

__all__ = ["LeWMAgent", "make_env", "resolve_checkpoint", "shipped_checkpoints", "CEMPlanner", "ModelConfig",
           "PlannerConfig", "PRESETS", "preset", "WorldModel",
           "sigreg", "pred_loss", "__version__"]
