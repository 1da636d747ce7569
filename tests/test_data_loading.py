"""The loader that training and evaluation iterate: its processes' failures for want of shared memory
or file handles are one line with the remedy, and evaluation's batches travel in shared memory."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from googlenet.data.loading import LoaderResourceError, StoppingLoader, resource_shortage

SHM = "unable to allocate shared memory(shm) for file </torch_1_2_3>: No space left on device (28)"


class Failing(Dataset[Any]):
    """Raises `message` as a RuntimeError, as torch does when /dev/shm is full."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Any:
        raise RuntimeError(self.message)


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (SHM, "could not get shared memory to pass images on"),
        (
            "Too many open files. Communication with the workers is no longer possible.",
            "ran out of file handles",
        ),
    ],
)
def test_a_worker_short_of_shared_memory_or_handles_is_one_line_with_the_remedy(
    message: str, said: str
) -> None:
    """A full /dev/shm (Docker's 64 MB) gave a 76-line worker traceback naming no cause or remedy."""
    loader = StoppingLoader(Failing(message), batch_size=2, num_workers=1)
    with pytest.raises(LoaderResourceError) as info:
        list(loader)
    text = str(info.value)
    assert said in text and "-j/--workers 0" in text and "\n" not in text and "Traceback" not in text


def test_other_errors_pass_through_and_the_messages_name_the_limits() -> None:
    with pytest.raises(RuntimeError, match="something else"):
        list(StoppingLoader(Failing("something else"), batch_size=2, num_workers=0))
    assert resource_shortage(RuntimeError("something else"), 2) is None
    assert "/dev/shm: " in (resource_shortage(RuntimeError(SHM), 2) or "")
    assert "ulimit -n is " in (resource_shortage(OSError(24, "Too many open files"), 2) or "")
    assert "give -j/--workers 0" in (
        resource_shortage(RuntimeError("DataLoader timed out after 600 seconds"), 2) or ""
    )


def test_evaluation_batches_are_made_in_shared_memory_by_the_loader_process(tmp_path: Any) -> None:
    """Made in ordinary memory, evaluation's batches were moved to /dev/shm by the queue's feeder
    thread, whose failure (a full /dev/shm) dropped the batch: `evaluate -j 2` waited for ever."""
    from PIL import Image

    from googlenet.data.crops import CropSpec, CropTransform
    from googlenet.evaluate.protocol import CropDataset, crop_loader

    paths = []
    for k in range(2):
        paths.append((str(tmp_path / f"{k}.png"), k))
        Image.new("RGB", (40, 30), (40 * k, 80, 120)).save(paths[-1][0])
    transform = CropTransform([CropSpec(crops=1, crop_size=16)])
    batches = list(crop_loader(paths, transform, images_per_batch=2, workers=1))
    assert len(batches) == 1 and batches[0].targets.tolist() == [0, 1]
    # in the loader process itself (what arrives in this one is shared either way)
    seen = StoppingLoader(
        CropDataset(paths, transform), batch_size=2, num_workers=1, collate_fn=_shared_there
    )
    assert [bool(flag) for flag in seen] == [True]


def _shared_there(items: Any) -> torch.Tensor:
    from googlenet.evaluate.protocol import collate_crops

    batch = collate_crops(items)
    return torch.tensor(batch.crops.is_shared() and batch.targets.is_shared())
