"""Wire schemas shared across process boundaries. Torch-free: services and environments import them."""

from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus

__all__ = ["Trajectory", "TrajectoryStatus"]
