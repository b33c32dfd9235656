"""The engines' resource arithmetic (egoclean.engine): GPU shares and the CPU requests a cluster can hold."""

from __future__ import annotations

import math

import pytest

from egoclean.engine import ScaleSettings, gpu_share, rectifier_cpus
from egoclean.errors import SettingError


def test_gpu_share_fits_every_actor_and_gives_whole_gpus_while_there_are_enough():
    assert gpu_share(0, 4) == 0.0 and gpu_share(0.5, 1) == 0.0  # no whole GPU: the model runs on the CPU
    for gpus in range(1, 17):
        for actors in range(1, 65):
            share = gpu_share(gpus, actors)
            per_gpu = round(1 / share)  # Ray packs this many actors onto one GPU
            assert math.isclose(share * per_gpu, 1.0)
            assert per_gpu * gpus >= actors, (gpus, actors)  # every actor is placed: none waits forever
            assert (per_gpu - 1) * gpus < actors, (gpus, actors)  # and no smaller share would do
            assert (share == 1.0) == (actors <= gpus)


def test_rectifiers_reserve_one_cpu_each_or_in_one_pass_a_share_of_what_fetching_leaves():
    node = [16.0]
    assert rectifier_cpus(ScaleSettings(), one_pass=False, node_cpus=node) == 1  # one rectify task per core
    # one pass: the actors rectify, so they split the CPUs left after the 2 fetch tasks
    assert rectifier_cpus(ScaleSettings(), one_pass=True, node_cpus=node) == 14
    assert rectifier_cpus(ScaleSettings(embed_actors=4), one_pass=True, node_cpus=node) == 3
    assert rectifier_cpus(ScaleSettings(embed_actors=4), one_pass=True, node_cpus=[8.0] * 8) == 8  # a node
    assert rectifier_cpus(ScaleSettings(), one_pass=True, node_cpus=[2.0]) == 1  # never less than one
    assert rectifier_cpus(ScaleSettings(rectify_cpus=3), one_pass=True, node_cpus=node) == 3  # as asked


def test_cpu_requests_that_cannot_be_scheduled_are_refused():
    two_nodes = [8.0, 4.0]
    assert rectifier_cpus(ScaleSettings(rectify_cpus=8), one_pass=False, node_cpus=two_nodes) == 8
    with pytest.raises(SettingError, match=r"largest node .* 8 CPUs"):
        rectifier_cpus(ScaleSettings(rectify_cpus=9), one_pass=False, node_cpus=two_nodes)
    # one pass: the actors hold their CPUs for the whole run, and the fetch tasks need one
    assert rectifier_cpus(ScaleSettings(rectify_cpus=5, embed_actors=2), True, two_nodes) == 5
    with pytest.raises(SettingError, match=r"2 x --rectify-cpus 6 = 12 CPUs"):
        rectifier_cpus(ScaleSettings(rectify_cpus=6, embed_actors=2), True, two_nodes)
    with pytest.raises(SettingError, match=r"3 x --rectify-cpus 1 = 3 CPUs .* has 2"):
        rectifier_cpus(ScaleSettings(embed_actors=3), True, [2.0])
    # without the one pass the embedding actors take one CPU each, whatever --rectify-cpus says
    assert rectifier_cpus(ScaleSettings(rectify_cpus=6, embed_actors=2), False, two_nodes) == 6
