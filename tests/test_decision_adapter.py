"""Decision-Transformer adapter: incremental caching equals re-encoding; every policy runs; errors are clear."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import DecisionTransformerConfig, DecisionTransformerModel

import namm_suite.attention  # noqa: F401  (registers attn_implementation="namm")
from namm_suite.adapters.decision import SHIPPED_DTS, DecisionAdapter, DTMeta
from namm_suite.adapters.models import resolve_model
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, create_policy
from namm_suite.shipped import SHIPPED_NAMM
from namm_suite.tasks import Episode

from .single_thread import one_torch_thread  # noqa: F401  (autouse)

OBS, ACT = 11, 3


@functools.cache
def tiny_dt(tanh: bool = True) -> tuple[DecisionTransformerModel, DecisionTransformerModel]:
    """The same random 2-layer DT (2 heads) with eager attention and with the namm hook, in eval mode."""
    def config() -> DecisionTransformerConfig:  # one object per model: _from_config writes the attention into it
        return DecisionTransformerConfig(state_dim=OBS, act_dim=ACT, hidden_size=32, n_layer=2, n_head=2,
                                         n_inner=64, max_ep_len=1000, action_tanh=tanh)

    torch.manual_seed(0)
    reference = DecisionTransformerModel._from_config(config(), attn_implementation="eager").eval()
    hooked = DecisionTransformerModel._from_config(config(), attn_implementation="namm").eval()
    hooked.load_state_dict(reference.state_dict())
    return reference, hooked


def meta(k: int = 5) -> DTMeta:
    rng = np.random.default_rng(0)
    return DTMeta("Hopper-v5", rng.standard_normal(OBS).tolist(), rng.uniform(0.5, 2, OBS).tolist(), k, 1000.0,
                  3600.0, {})


@pytest.fixture(scope="module")
def models():
    return tiny_dt()


@given(steps=st.integers(1, 30), update_every=st.sampled_from([16, 32, 48, 512]), tanh=st.booleans(),
       seed=st.integers(0, 10))
@settings(max_examples=25, deadline=None)
def test_incremental_full_cache_equals_one_forward_over_the_whole_history(steps, update_every, tanh, seed):
    """Step-by-step caching (passes split on the memory schedule) gives the HF model's action predictions
    (with and without tanh: the raw outputs) for every step of a trajectory re-encoded in one forward."""
    reference, hooked = tiny_dt(tanh)
    adapter = DecisionAdapter(hooked, meta())
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((steps, OBS)).astype(np.float32)
    actions = rng.uniform(-1, 1, (steps, ACT)).astype(np.float32)
    rtg = np.linspace(3600, 3000, steps).astype(np.float32)
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=update_every))
    manager.new_cache()
    preds = torch.stack([adapter.act_cached(manager, adapter.embed_step(float(rtg[t]), states[t], t,
                                                                         actions[t - 1] if t else None))
                         for t in range(steps)])
    with torch.no_grad():
        full = reference(states=((torch.tensor(states) - adapter.mean) / adapter.std)[None], actions=torch.tensor(actions)[None],
                         returns_to_go=torch.tensor(rtg)[None, :, None] / 1000, timesteps=torch.arange(steps)[None])
    torch.testing.assert_close(preds, full.action_preds[0], atol=2e-6, rtol=1e-5)
    assert manager.stats().tokens_seen == 3 * steps - 1


def test_rollout_cache_full_equals_window_over_the_whole_episode(models):
    """In the environment: the cache protocol with the full policy takes the same actions, hence the same
    return, as the classic protocol with a window longer than the episode."""
    _, hooked = models
    cached = DecisionAdapter(hooked, meta()).rollout("Hopper-v5", 3, 40, 3600.0,
                                                     MemoryManager(create_policy("full"), MemoryConfig(16)))
    window = DecisionAdapter(hooked, meta(k=1000), "window").rollout(
        "Hopper-v5", 3, 40, 3600.0, MemoryManager(create_policy("full")))
    assert cached.extra["steps"] == window.extra["steps"]
    assert cached.output == pytest.approx(window.output, rel=1e-5)
    assert cached.stats.tokens_seen == 3 * cached.extra["steps"] - 1


def test_window_is_the_last_k_steps(models):
    """The window protocol with K steps equals HF's forward over exactly the last K steps."""
    _, hooked = models
    adapter = DecisionAdapter(hooked, meta(k=4), "window")
    rng = np.random.default_rng(0)
    history = {"rtg": list(np.linspace(3600, 3500, 9)), "states": list(rng.standard_normal((9, OBS))),
               "actions": list(rng.uniform(-1, 1, (9, ACT))), "timesteps": list(range(9))}
    short = {k: v[-4:] for k, v in history.items()}
    torch.testing.assert_close(adapter.act_window(history, 4), adapter.act_window(short, 100))
    assert not torch.allclose(adapter.act_window(history, 4), adapter.act_window(history, 9))


@pytest.mark.parametrize("policy", POLICIES.names())
def test_every_policy_runs_an_episode(models, policy):
    """Every registered policy prunes the DT's cache (2 layers × 2 heads) during a 40-step Hopper episode."""
    _, hooked = models
    options = {"checkpoint": str(SHIPPED_NAMM)} if policy == "namm" else {"seed": 0} if policy == "random" else {}
    budget = 24 if POLICIES.get(policy).uses_budget else None
    manager = MemoryManager(create_policy(policy, **options), MemoryConfig(update_every=16, budget=budget))
    episode = Episode("hopper", "s0-0", {"env_id": "Hopper-v5", "env_seed": 0, "max_steps": 40,
                                         "target_return": None}, ())
    prediction = DecisionAdapter(hooked, meta()).run(episode, manager)
    assert np.isfinite(prediction.output) and prediction.extra["steps"] >= 1
    stats = prediction.stats
    if budget is not None and stats.tokens_seen > 32:
        assert stats.n_updates >= 1 and stats.final_kept <= budget + 16
    assert prediction.extra["target_return"] == 3600.0


def test_errors_are_clear(models):
    _, hooked = models
    episode = Episode("walker2d", "s0-0", {"env_id": "Walker2d-v5", "env_seed": 0, "max_steps": 5}, ())
    full = MemoryManager(create_policy("full"))
    with pytest.raises(ValueError, match="trained on Hopper-v5; task .walker2d. runs Walker2d-v5: give --model"):
        DecisionAdapter(hooked, meta()).run(episode, full)
    hopper = Episode("hopper", "s0-0", {"env_id": "Hopper-v5", "env_seed": 0, "max_steps": 5}, ())
    with pytest.raises(ValueError, match="window protocol .* policy 'full', not 'h2o'"):
        DecisionAdapter(hooked, meta(), "window").run(
            hopper, MemoryManager(create_policy("h2o"), MemoryConfig(budget=8)))
    with pytest.raises(ValueError, match="unknown protocol 'sliding'"):
        DecisionAdapter(hooked, meta(), "sliding")
    reference, _ = models
    with pytest.raises(ValueError, match="attn_implementation='namm'"):
        DecisionAdapter(reference, meta())
    with pytest.raises(ValueError, match="unknown Decision Transformer 'dt-ant'.*dt-hopper"):
        resolve_model("dt-ant", SHIPPED_DTS)


@pytest.mark.skipif(not (SHIPPED_DTS.get("dt-hopper") / "config.json").is_file(), reason="dt-hopper not trained yet")
def test_shipped_dt_hopper_loads_and_acts():
    adapter = DecisionAdapter.from_pretrained("dt-hopper")
    assert adapter.meta.env_id == "Hopper-v5" and adapter.meta.context_steps == 20
    prediction = adapter.rollout("Hopper-v5", 0, 30, adapter.meta.target_return,
                                 MemoryManager(create_policy("streaming"), MemoryConfig(48, budget=60)))
    assert np.isfinite(prediction.output) and prediction.output > 0


def test_task_target_return_option_reaches_the_model(models):
    """``--task-options target_return`` (a GymTask field) overrides the checkpoint's default return-to-go."""
    from namm_suite.tasks import TASKS, TaskContext, with_options

    _, hooked = models
    task = with_options(TASKS.get("hopper")(), {"target_return": 1200.0})
    episode = task.episodes(TaskContext(length=15, seed=0))[0]
    prediction = DecisionAdapter(hooked, meta()).run(episode, MemoryManager(create_policy("full")))
    assert prediction.extra["target_return"] == 1200.0 and prediction.extra["steps"] <= 5
