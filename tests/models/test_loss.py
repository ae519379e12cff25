import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from action100m.models.config import LossConfig
from action100m.models.loss import InfoNCE


def hand_infonce(predicted, target, temperature):
    """The textbook formula, one row at a time, in float64."""

    def unit(row):
        norm = math.sqrt(sum(x * x for x in row))
        return [x / norm for x in row]

    p, y = [unit(row) for row in predicted.tolist()], [unit(row) for row in target.tolist()]
    n = len(p)

    def sim(a, b):
        return sum(x * z for x, z in zip(a, b, strict=True)) / temperature

    to_text = sum(
        -sim(p[i], y[i]) + math.log(sum(math.exp(sim(p[i], y[j])) for j in range(n))) for i in range(n)
    )
    to_video = sum(
        -sim(y[i], p[i]) + math.log(sum(math.exp(sim(y[i], p[j])) for j in range(n))) for i in range(n)
    )
    return (to_text + to_video) / (2 * n)


def test_loss_is_the_hand_computed_bidirectional_infonce():
    torch.manual_seed(0)
    predicted, target = torch.randn(6, 5), torch.randn(6, 5)
    loss_fn = InfoNCE(LossConfig(temperature=0.2, learn_temperature=False))
    loss, logits = loss_fn(predicted, target)
    assert loss.item() == pytest.approx(hand_infonce(predicted, target, 0.2), rel=1e-5)
    assert logits.shape == (6, 6) and loss_fn.temperature == pytest.approx(0.2)
    assert not list(loss_fn.parameters())  # a fixed temperature is not trained


def test_a_learned_temperature_is_a_parameter_and_is_clamped():
    loss_fn = InfoNCE(LossConfig(temperature=0.07, learn_temperature=True, max_logit_scale=10.0))
    [scale] = loss_fn.parameters()
    assert scale.item() == pytest.approx(math.log(1 / 0.07))
    predicted, target = torch.randn(4, 3), torch.randn(4, 3)
    loss, _ = loss_fn(predicted, target)
    assert loss.item() == pytest.approx(hand_infonce(predicted, target, 0.1), rel=1e-5)  # clamped to 1/10
    loss.backward()
    assert scale.grad is not None


def _rank(rank, world, port, predicted, target, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rows = predicted.shape[0] // world
    mine = slice(rank * rows, (rank + 1) * rows)
    p, y = predicted[mine].clone().requires_grad_(), target[mine].clone().requires_grad_()
    loss, _ = InfoNCE(LossConfig(temperature=0.1, learn_temperature=False))(p, y)
    loss.backward()
    torch.save({"loss": loss.detach(), "p": p.grad, "y": y.grad}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_under_ddp_each_rank_gets_its_share_of_the_global_batch_gradient(tmp_path):
    """Two gloo ranks with half a batch each: the mean of their losses is the global-batch loss, and
    their gradients, averaged as DDP averages parameter gradients, are the global batch's."""
    torch.manual_seed(1)
    predicted, target = torch.randn(8, 4), torch.randn(8, 4)
    mp.spawn(_rank, args=(2, 29517, predicted, target, tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    p, y = predicted.clone().requires_grad_(), target.clone().requires_grad_()
    loss, _ = InfoNCE(LossConfig(temperature=0.1, learn_temperature=False))(p, y)
    loss.backward()
    assert (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2 == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(torch.cat([r["p"] for r in ranks]) / 2, p.grad, atol=1e-6)
    assert torch.allclose(torch.cat([r["y"] for r in ranks]) / 2, y.grad, atol=1e-6)
