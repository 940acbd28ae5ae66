"""Build a small synthetic LeRobot dataset on disk (no network), for the demo and the tests.

Run with the trainer environment's Python: `python synthetic_dataset.py ROOT [--repo-id local/synthetic]`.
"""

import argparse
import math
import random


def build(root: str, repo_id: str = "local/synthetic", episodes: int = 4, frames: int = 40, fps: int = 10) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    joints = ["j0", "j1", "j2", "j3"]
    features = {
        "observation.state": {"dtype": "float32", "shape": (4,), "names": joints},
        "observation.environment_state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": (4,), "names": joints},
    }
    dataset = LeRobotDataset.create(repo_id=repo_id, fps=fps, features=features, root=root, use_videos=False)
    rng = random.Random(0)
    import numpy as np

    for episode in range(episodes):
        phase = rng.random() * math.pi
        for t in range(frames):
            angle = phase + t / frames * math.pi
            state = np.array([math.sin(angle + k) for k in range(4)], dtype=np.float32)
            dataset.add_frame(
                {
                    "observation.state": state,
                    "observation.environment_state": np.array([math.cos(angle), episode / episodes], dtype=np.float32),
                    "action": np.roll(state, 1),
                    "task": "follow the sine",
                }
            )
        dataset.save_episode()
    dataset.finalize()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root")
    parser.add_argument("--repo-id", default="local/synthetic")
    args = parser.parse_args()
    build(args.root, args.repo_id)
