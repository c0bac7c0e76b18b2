"""OGBench single-cube pick-and-place (UR5e arm + Robotiq 2F-85 gripper, MuJoCo) as a goal pixel env.

The robot, physics, controller and action semantics are OGBench's own
(`ogbench.manipspace.envs.cube_env.CubeEnv`, env_type="single", its "visual" colours with the
translucent arm); this class only adds the lewm goal-image contract around it.

Action (5,) in [-1, 1], OGBench's relative end-effector control, scaled by (0.05, 0.05, 0.05, 0.3, 1):
  [0:3] effector displacement in metres (±0.05 m per step; the target is clipped to the workspace),
  [3] yaw change in radians (±0.3), [4] change of the gripper opening (fraction of full range, ±1).
Each step holds the IK joint targets for 25 physics steps of 2 ms (20 Hz control).

State (76,) float64, MuJoCo's mj_getState layout: [0] time, [1:22] qpos (6 arm, 8 gripper, cube
xyz + quaternion wxyz at [15:22]), [22:42] qvel, [42:62] qacc_warmstart (the solver's warm start, so
restored steps are bit-identical), [62:69] ctrl, [69:72] target position, [72:76] target quaternion.
The target slot follows the env's goal: after `reset` and `set_goal_state` it holds the goal
state's cube pose (OGBench keeps its target in an invisible mocap body the oracles read).

Observation (28,) float32, OGBench's state observation for cube-single: [0:6] arm joint angles,
[6:12] arm joint velocities, [12:15] (effector xyz - (0.425, 0, 0)) * 10, [15:17] cos/sin effector yaw,
[17] gripper opening * 3, [18] gripper pad contact in [0, 1], [19:22] (cube xyz - (0.425, 0, 0)) * 10,
[22:26] cube quaternion wxyz, [26:28] cos/sin cube yaw.
achieved_goal = cube xyz (m), desired_goal = the goal state's cube xyz; success within 0.04 m.

Reset samples the start as OGBench's data-collection reset does (arm at a random pose above the
table, cube at a random pose on the table, random target on the table); the goal state puts the cube
at the target with the arm at another random pose, as OGBench builds its task goal images.

Rendering: `render_quality="fast"` (default: no shadows, no multisampling), "lite" (as fast, with
the arm's 185k mesh faces clustered on a grid of 0.64 / image_size metres, 1 cm at 64 px, to ~8k:
faster with software EGL, the same picture but for 1.5% of pixels on the arm's edges, mean
|difference| 0.6 / 255; see mesh_lod.py) or "full" (MuJoCo's/OGBench's defaults: 4096 px shadow
map, 4x multisampling; the slowest). Frame times: README, Speed. Images differ between qualities,
so a model is trained and evaluated with one.
Memory: the CubeEnvs of a process share one OGBench simulator and one renderer per (size, quality)
(`share_sim=True`, default): each env parks its full state when another one uses the simulator
and restores it when it comes back, so results are bit-identical to private simulators and fifty
envs cost ~0.4 GB instead of ~16 GB. Not thread-safe (neither is a private MuJoCo env).
MuJoCo picks its GL backend when it is first imported, so MUJOCO_GL is set to "egl" here when unset.
Worker processes: a process that has created a CubeEnv (a GL context) must not fork workers that
render (software EGL hangs); fork before creating one, or use the "spawn" start method.
"""
from __future__ import annotations

import os
import sys
import weakref

# MuJoCo fixes its GL backend when first imported: too late here if something imported it already.
_LATE_GL_DEFAULT = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
os.environ.setdefault("MUJOCO_GL", "egl")

from typing import Any

import numpy as np

from ..base import GoalPixelEnv

_GL_HELP = ("MuJoCo renders offscreen through OpenGL. Headless: install EGL (Debian/Ubuntu: "
            "`apt-get install libegl1 libgl1`; NVIDIA: the driver's libEGL) and use MUJOCO_GL=egl, or "
            "install OSMesa (`apt-get install libosmesa6`) and use MUJOCO_GL=osmesa; with a display, "
            "MUJOCO_GL=glfw. Set MUJOCO_GL before anything imports mujoco.")

try:
    import mujoco
    from ogbench.manipspace.envs.cube_env import CubeEnv as _OGBenchCubeEnv
except ModuleNotFoundError as err:
    if err.name and err.name.split(".")[0] in ("mujoco", "ogbench", "dm_control"):
        raise ModuleNotFoundError(f"lewm/Cube-v0 needs OGBench and MuJoCo: pip install ogbench ({err})",
                                  name=err.name) from err
    raise
except (ImportError, AttributeError, RuntimeError) as err:
    # mujoco resolves MUJOCO_GL at import: an unknown value raises RuntimeError, a missing OSMesa
    # library surfaces as PyOpenGL's AttributeError, other missing pieces as ImportError.
    raise RuntimeError(f"importing mujoco failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                       f"{err!r}. {_GL_HELP}") from err

from .mesh_lod import simplified_render_model

RENDER_QUALITIES = {"fast": {"shadows": False, "multisamples": 0, "mesh_cell": None},
                    "lite": {"shadows": False, "multisamples": 0, "mesh_cell": 0.64},  # / image size
                    "full": {"shadows": True, "multisamples": 4, "mesh_cell": None}}
CAMERAS = ("front_pixels", "front")  # OGBench's cameras: the one of its pixel tasks, and the wider one
_STATE_SPEC = (mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL
               | mujoco.mjtState.mjSTATE_WARMSTART | mujoco.mjtState.mjSTATE_CTRL
               | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
_XYZ_CENTER = np.array([0.425, 0.0, 0.0])  # OGBench's observation normalisation
SUCCESS_RADIUS = 0.04
CUBE_XYZ = slice(15, 18)  # the cube's xyz in a state row: [0] time, then qpos with the cube at qpos[14:17]


def _make_renderer(model: mujoco.MjModel, size: int, render_quality: str) -> mujoco.Renderer:
    """An offscreen renderer with the quality preset's settings, or a RuntimeError saying how to get GL."""
    quality = RENDER_QUALITIES[render_quality]
    if quality["mesh_cell"] is not None:  # metres per image pixel: 1 cm at 64 px, about a pixel there
        model = simplified_render_model(model, quality["mesh_cell"] / size)
    model.vis.quality.offsamples = quality["multisamples"]  # read when the GL context is made
    try:
        renderer = mujoco.Renderer(model, height=size, width=size)
    except (ImportError, RuntimeError, mujoco.FatalError) as err:
        backend = (f"MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}" if not _LATE_GL_DEFAULT else
                   "mujoco was imported before lewm_envs.cube.env with MUJOCO_GL unset, so it picked GLFW, which "
                   "needs a display; export MUJOCO_GL=egl or import lewm_envs first")
        raise RuntimeError(f"MuJoCo could not create an OpenGL context ({backend}): {err!r}. {_GL_HELP}") from err
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = quality["shadows"]
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = quality["shadows"]
    return renderer


class _Sim(_OGBenchCubeEnv):
    """OGBench's cube env without its own observation: in "pixels" mode it would render on every
    reset through a second GL context; the wrapper renders and builds observations itself."""

    def compute_observation(self) -> None:
        return None


class _Backend:
    """An OGBench simulator and its renderers, one per (image size, quality), shared by CubeEnvs.

    OGBench's env holds ~200 MB and a renderer (an OpenGL context with the meshes) ~125 MB; the
    simulation is a function of the full state alone, so one simulator serves any number of envs
    (see `CubeEnv._claim`). It lives while an env refers to it.
    """

    def __init__(self) -> None:
        # "pixels" selects OGBench's colours for pixel tasks; visualize_info=False hides the target
        # marker and the success colouring, which would leak the goal into the current image.
        self.sim = _Sim(env_type="single", ob_type="pixels", width=64, height=64, visualize_info=False,
                        mode="data_collection", terminate_at_goal=False)
        self.sim.reset(seed=0)  # compiles the model; episodes are sampled from each env's np_random
        model = self.sim.model
        if mujoco.mj_stateSize(model, _STATE_SPEC) != CubeEnv.state_dim:
            raise RuntimeError(f"OGBench's cube model changed: state size {mujoco.mj_stateSize(model, _STATE_SPEC)}"
                               f" != {CubeEnv.state_dim}; this wrapper was written for ogbench 1.2")
        self.initial_state = np.empty(CubeEnv.state_dim, dtype=np.float64)
        mujoco.mj_getState(model, self.sim.data, self.initial_state, _STATE_SPEC)
        self.user: weakref.ref | None = None  # the env whose state the simulator holds
        self._renderers: dict[tuple[int, str], mujoco.Renderer] = {}
        self.envs: weakref.WeakSet = weakref.WeakSet()  # the open envs using it

    def renderer(self, size: int, quality: str) -> mujoco.Renderer:
        if (size, quality) not in self._renderers:
            self._renderers[size, quality] = _make_renderer(self.sim.model, size, quality)
        return self._renderers[size, quality]

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


_SHARED: weakref.WeakValueDictionary[str, _Backend] = weakref.WeakValueDictionary()


class CubeEnv(GoalPixelEnv):
    """OGBench's single-cube pick-and-place (MuJoCo) as a goal-image env; see the module docstring.

    Args: image_size, render_mode, terminate_on_success as in `GoalPixelEnv`; render_quality
    ("fast", "lite" or OGBench's own "full"); camera; render_size, render_goal: what `render()`
    returns; share_sim: share the process's simulator and renderers (identical results, ~1/50 memory).
    """

    env_id = "lewm/Cube-v0"  # its registered id: `reset(options={"goal_steps": k})` asks its expert
    pixel_kwargs = ("image_size", "render_quality", "camera")
    state_dim = 76
    obs_dim = 28
    goal_dim = 3
    action_dim = 5

    def __init__(self, image_size: int = 64, render_mode: str | None = None, terminate_on_success: bool = True,
                 render_quality: str = "fast", camera: str = "front_pixels", render_size: int | None = 256,
                 render_goal: str = "beside", share_sim: bool = True, goal_steps: int | None = None):
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality: expected one of {sorted(RENDER_QUALITIES)}, got {render_quality!r}")
        if camera not in CAMERAS:
            raise ValueError(f"camera: expected one of {list(CAMERAS)}, got {camera!r}")
        super().__init__(image_size, render_mode, terminate_on_success, render_size, render_goal, goal_steps)
        self.render_quality, self.camera, self.share_sim = render_quality, camera, bool(share_sim)
        backend = _SHARED.get("cube") if share_sim else None
        if backend is None:
            backend = _Backend()
            if share_sim:
                _SHARED["cube"] = backend
        self._backend: _Backend | None = backend
        backend.envs.add(self)
        self._parked = backend.initial_state.copy()  # this env's state while another one simulates
        model = backend.sim.model
        self._n_substeps = round(backend.sim.control_timestep() / backend.sim.physics_timestep())
        self._cube_qpos = int(model.joint("object_joint_0").qposadr[0])  # xyz then quaternion wxyz
        if 1 + self._cube_qpos != CUBE_XYZ.start:  # pair_difficulty reads states without an env
            raise RuntimeError(f"OGBench's cube model changed: cube qpos address {self._cube_qpos} != 14")
        self._renderer = backend.renderer(self.image_size, render_quality)

    # ------------------------------------------------------------ the shared simulator
    def _claim(self) -> _Backend:
        """Make the simulator hold this env's state: park the previous user's state, restore ours."""
        b = self._backend
        if b is None:
            raise RuntimeError("this CubeEnv is closed")
        user = b.user() if b.user is not None else None
        if user is not self:
            model, data = b.sim.model, b.sim.data
            if user is not None:
                mujoco.mj_getState(model, data, user._parked, _STATE_SPEC)
            mujoco.mj_setState(model, data, self._parked, _STATE_SPEC)
            mujoco.mj_forward(model, data)  # as `_forward`: the same derived quantities as before parking
            mujoco.mj_rnePostConstraint(model, data)
            b.user = weakref.ref(self)
        return b

    @property
    def _sim(self) -> _OGBenchCubeEnv:
        return self._claim().sim

    # ------------------------------------------------------------ public helpers
    @property
    def sim(self) -> _OGBenchCubeEnv:
        """The wrapped OGBench env (for its oracles), holding this env's state; drive the episode
        through this class only, and do not keep it across another CubeEnv's calls."""
        return self._sim

    def oracle_info(self) -> dict[str, Any]:
        """OGBench's info dict for the current frame (proprio and privileged cube/target keys)."""
        return self._sim.compute_ob_info()

    def make_goal_state(self, target_pos: np.ndarray, target_quat: np.ndarray | None = None) -> np.ndarray:
        """A state with the cube resting at target_pos (wxyz target_quat, default upright) and the arm
        at a random pose, as OGBench renders its task goals; the current simulation is untouched."""
        pos = np.asarray(target_pos, dtype=np.float64)
        quat = np.array([1.0, 0, 0, 0]) if target_quat is None else np.asarray(target_quat, dtype=np.float64)
        if pos.shape != (3,) or quat.shape != (4,) or not (np.isfinite(pos).all() and np.isfinite(quat).all()):
            raise ValueError(f"make_goal_state: expected finite target_pos (3,) and target_quat (4,), "
                             f"got shapes {pos.shape} and {quat.shape}")
        current = self.get_state()
        model, data = self._sim.model, self._sim.data
        mujoco.mj_resetData(model, data)
        data.qpos[self._sim._arm_joint_ids] = self._sim._home_qpos  # IK seed, as in OGBench's reset
        self._sim.np_random = self.np_random
        self._sim.initialize_arm()
        data.qpos[self._cube_qpos:self._cube_qpos + 7] = np.concatenate([pos, quat / np.linalg.norm(quat)])
        data.mocap_pos[0], data.mocap_quat[0] = pos, quat
        self._forward()
        goal = self.get_state()
        self.set_state(current)
        return goal

    def sample_goal_state(self, min_distance: float = 2 * SUCCESS_RADIUS) -> np.ndarray:
        """A goal with the cube at a random target on the table (OGBench's target sampling: xy uniform
        in its bounds, random yaw), at least min_distance from the cube's current position."""
        low, high = self._sim._target_sampling_bounds
        cube = self._achieved_goal()
        for _ in range(100):
            xy = self.np_random.uniform(low, high)
            if np.linalg.norm(xy - cube[:2]) >= min_distance:
                break
        yaw = self.np_random.uniform(0, 2 * np.pi)
        quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        return self.make_goal_state(np.array([xy[0], xy[1], 0.02]), quat)

    # ------------------------------------------------------------ goal bookkeeping
    def _sync_target(self) -> None:
        """Point OGBench's target (mocap) at the goal's cube pose: the oracles and the state read it."""
        q = self._goal_state[1 + self._cube_qpos:1 + self._cube_qpos + 7]
        self._sim.data.mocap_pos[0], self._sim.data.mocap_quat[0] = q[:3], q[3:]
        self._forward()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        out = super().reset(seed=seed, options=options)
        self._sync_target()
        return out

    def set_goal_state(self, goal_state: np.ndarray) -> None:
        super().set_goal_state(goal_state)
        self._sync_target()

    def close(self) -> None:
        b, self._backend, self._renderer = self._backend, None, None
        if b is None:
            return
        if b.user is not None and b.user() is self:
            b.user = None
        b.envs.discard(self)
        if not b.envs:  # the last env of this simulator: free its GL contexts now, not at GC
            b.close()
            if _SHARED.get("cube") is b:
                del _SHARED["cube"]

    # ------------------------------------------------------------ simulator hooks
    def _forward(self) -> None:
        # mj_step leaves position-dependent quantities one substep stale; recomputing them makes a
        # restored frame identical to a stepped one (same controller input, same pixels) without
        # changing the dynamics. rnePostConstraint fills the contact forces of the gripper-contact feature.
        mujoco.mj_forward(self._sim.model, self._sim.data)
        mujoco.mj_rnePostConstraint(self._sim.model, self._sim.data)

    def _sample_state(self) -> np.ndarray:
        self._sim.np_random = self.np_random
        self._sim.reset()  # OGBench's data-collection reset: random arm pose, cube pose and target
        for _ in range(100):  # a target already reached is no task
            if np.linalg.norm(self._sim.data.mocap_pos[0] - self._achieved_goal()) > SUCCESS_RADIUS:
                break
            self._sim.set_new_target(return_info=False)
        self._forward()
        return self.get_state()

    def _sample_goal_state(self, state: np.ndarray) -> np.ndarray:
        return self.make_goal_state(state[69:72], state[72:76])  # the target drawn with the start

    @staticmethod
    def probe_quantities(state: np.ndarray, observation: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Physical quantities a representation should hold, from rows of `observation` (N, 28):
        the cube's position in metres and the gripper opening (fraction of its range)."""
        o = np.asarray(observation, dtype=np.float64)
        return {"cube_xyz": (o[:, 19:22] / 10.0 + (0.425, 0.0, 0.0), "m"), "gripper": (o[:, 17:18] / 3.0, "fraction")}

    @staticmethod
    def pair_difficulty(start_states: np.ndarray, goal_states: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """What each start/goal pair asks, from rows of `state` (N, 76): the cube's straight-line
        travel in metres (its xyz sits at `CUBE_XYZ` of the state; checked against the model on init)."""
        s, g = (np.asarray(x, dtype=np.float64).reshape(-1, 76) for x in (start_states, goal_states))
        return {"cube_travel": (np.linalg.norm(g[:, CUBE_XYZ] - s[:, CUBE_XYZ], axis=1), "m")}

    def get_state(self) -> np.ndarray:
        state = np.empty(self.state_dim, dtype=np.float64)
        mujoco.mj_getState(self._sim.model, self._sim.data, state, _STATE_SPEC)
        return state

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (self.state_dim,) or not np.isfinite(s).all():
            raise ValueError(f"state: expected a finite float array of shape ({self.state_dim},) as returned "
                             f"by get_state(), got shape {s.shape}")
        mujoco.mj_setState(self._sim.model, self._sim.data, s, _STATE_SPEC)
        self._forward()

    def _apply_action(self, action: np.ndarray) -> None:
        self._sim.set_control(action.astype(np.float64))  # OGBench's relative end-effector IK controller
        mujoco.mj_step(self._sim.model, self._sim.data, nstep=self._n_substeps)
        self._forward()

    def _render_current(self) -> np.ndarray:
        self._renderer.update_scene(self._sim.data, camera=self.camera)
        return self._renderer.render()

    def _observation(self) -> np.ndarray:
        info = self._sim.compute_ob_info()
        eff_yaw, cube_yaw = info["proprio/effector_yaw"][0], info["privileged/block_0_yaw"][0]
        return np.concatenate([
            info["proprio/joint_pos"], info["proprio/joint_vel"],
            (info["proprio/effector_pos"] - _XYZ_CENTER) * 10.0, [np.cos(eff_yaw), np.sin(eff_yaw)],
            info["proprio/gripper_opening"] * 3.0, info["proprio/gripper_contact"],
            (info["privileged/block_0_pos"] - _XYZ_CENTER) * 10.0, info["privileged/block_0_quat"],
            [np.cos(cube_yaw), np.sin(cube_yaw)]]).astype(np.float32)

    def _achieved_goal(self) -> np.ndarray:
        return self._sim.data.qpos[self._cube_qpos:self._cube_qpos + 3].copy()

    def _goal_from_state(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(state)[1 + self._cube_qpos:1 + self._cube_qpos + 3].copy()

    def _success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1) <= SUCCESS_RADIUS
