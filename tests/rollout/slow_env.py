"""A key-value environment whose calls take a while, so a worker can be killed mid-job (SIGKILL test)."""

from __future__ import annotations

import time

from agentrl.rollout.warmstart import ShortKV


class SlowKV(ShortKV):
    delay_s = 1.0

    def reset(self, task_id=None, task_spec=None, seed=None):
        time.sleep(self.delay_s)
        return super().reset(task_id=task_id, task_spec=task_spec, seed=seed)

    def step(self, action):
        time.sleep(self.delay_s)
        return super().step(action)
