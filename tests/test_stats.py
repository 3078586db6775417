"""The paired test every comparison of two models uses (tie-break, final check, promotion), and
the pieces of the delivered model tested on their own: the weight average and the ensemble net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from automl_cnn.metrics import Yardstick
from automl_cnn.model.ensemble_net import EnsembleNet
from automl_cnn.stats import mcnemar
from automl_cnn.training.averaging import WeightAverage, ema_decay


def test_mcnemar_counts_only_the_images_the_models_disagree_on() -> None:
    a = np.array([True] * 90 + [True] * 8 + [False] * 2)
    b = np.array([True] * 90 + [False] * 8 + [True] * 2)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (8, 2)
    assert test.p_value == pytest.approx(56 / 1024)  # P(X >= 8), X ~ Binomial(10, 1/2)
    assert not test.a_better()  # 0.0547 is not below 5%
    labels = np.ones(100, np.int64)
    assert Yardstick("accuracy", labels).p_value(np.where(b, 1, 0), np.where(a, 1, 0)) == 1.0  # b is not ahead
    assert mcnemar(np.ones(12, bool), np.array([False] * 6 + [True] * 6)).a_better()  # 6 to 0: p = 1/64


def test_mcnemar_refuses_different_images() -> None:
    with pytest.raises(ValueError, match="different images"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))


def test_the_weight_average_follows_the_network_with_its_decay() -> None:
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    average = WeightAverage(net, total_steps=100)  # horizon 10 steps
    assert average.decay == pytest.approx(ema_decay(100)) == pytest.approx(0.9)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update(net)  # the first update copies the weights
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update(net)
    expected = 0.9 * (start + 1.0) + 0.1 * (start + 2.0)
    assert torch.allclose(average.cpu_weights()["weight"], expected)


def test_an_ensemble_net_averages_its_members_probabilities() -> None:
    torch.manual_seed(0)
    members = [nn.Linear(4, 3), nn.Linear(4, 3)]
    net = EnsembleNet(members, [3.0, 1.0])
    x = torch.randn(5, 4)
    expected = 0.75 * torch.softmax(members[0](x), 1) + 0.25 * torch.softmax(members[1](x), 1)
    assert torch.allclose(torch.softmax(net(x), 1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="one weight per member"):
        EnsembleNet(members, [1.0])
