import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine has 2 shared cores; intra-op threads only oversubscribe them (and tiny ops gain nothing).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
