"""A faster ``MultiDiscrete`` action distribution for SB3 policies (what ``distsafe train`` uses).

SB3's ``MultiCategoricalDistribution`` (and sb3-contrib's masked one) build one
``torch.distributions.Categorical`` per action dimension on every forward pass and every
minibatch — nine of them for the sandbox — and that, not the environment, dominated a PPO run
on the sandbox (``benchmarks/bench_rl.py``). :class:`FusedMultiCategorical` is **the same
distribution** (each dimension a softmax over its own logits; log-probabilities and entropies
summed over the dimensions), computed on one ``(batch, dims, max(nvec))`` tensor of logits
padded far below any real one: a handful of tensor operations whatever the number of dimensions.
:class:`MaskableFusedMultiCategorical` applies sb3-contrib's masks the way it does (a masked
logit becomes ``-1e8``), so ``MaskablePPO`` is unchanged but for speed.

:class:`FusedMlpPolicy` and :class:`MaskableFusedMlpPolicy` are ``MlpPolicy`` with them for
``MultiDiscrete`` action spaces (any other space: the stock distribution). Log-probabilities
and entropies equal the stock ones to float precision (``tests/test_rl_train.py``); samples are
drawn in another order, so a seed gives other (equally valid) trajectories than stock SB3.
"""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy

__all__ = ["FusedMlpPolicy", "FusedMultiCategorical", "MaskableFusedMlpPolicy",
           "MaskableFusedMultiCategorical"]

_HUGE_NEG = -1e8  # sb3-contrib's masked logit
_PAD = -1e9  # the logit of a padding position


class _Fused:
    """The padded-tensor computations both fused distributions share."""

    def _setup(self, action_dims: Any) -> None:
        nvec = [int(n) for n in action_dims]
        self._dims, self._width = len(nvec), max(nvec)
        # where each flat logit goes in the padded (dims * width) row
        self._pos = torch.as_tensor([d * self._width + k for d, n in enumerate(nvec)
                                     for k in range(n)])
        self._logits: torch.Tensor | None = None
        self.logp: torch.Tensor | None = None

    def _set(self, action_logits: torch.Tensor) -> None:
        self._logits = action_logits
        self._normalise(action_logits)

    def _normalise(self, logits: torch.Tensor) -> None:
        batch = logits.shape[0]
        # padding far below any logit (and below a masked one, -1e8): its probability is 0
        # exactly, and 0 * its log-probability is 0, so sums need no special case
        padded = logits.new_full((batch, self._dims * self._width), _PAD)
        padded = padded.index_copy(1, self._pos, logits).view(batch, self._dims, self._width)
        # log-softmax by hand (shift by the detached maximum): the same values as
        # torch.log_softmax, and faster forward and backward on rows this short
        z = padded - padded.detach().amax(dim=-1, keepdim=True)
        self.logp = z - z.exp().sum(dim=-1, keepdim=True).log()

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.logp.gather(2, actions.long().unsqueeze(-1)).squeeze(-1).sum(dim=1)

    def entropy(self) -> torch.Tensor:
        return -(self.logp.exp() * self.logp).sum(dim=(1, 2))

    def sample(self) -> torch.Tensor:
        probs = self.logp.exp().view(-1, self._width)
        return torch.multinomial(probs, 1).view(-1, self._dims)

    def mode(self) -> torch.Tensor:
        return self.logp.argmax(dim=-1)


class FusedMultiCategorical(_Fused, MultiCategoricalDistribution):
    """SB3's ``MultiCategoricalDistribution``, computed in one padded tensor."""

    def __init__(self, action_dims: Any) -> None:
        MultiCategoricalDistribution.__init__(self, [int(n) for n in action_dims])
        self._setup(action_dims)

    def proba_distribution(self, action_logits: torch.Tensor) -> FusedMultiCategorical:
        self._set(action_logits)
        return self


class MaskableFusedMultiCategorical(_Fused, MaskableMultiCategoricalDistribution):
    """sb3-contrib's ``MaskableMultiCategoricalDistribution``, in one padded tensor."""

    def __init__(self, action_dims: Any) -> None:
        MaskableMultiCategoricalDistribution.__init__(self, [int(n) for n in action_dims])
        self._setup(action_dims)

    def proba_distribution(self, action_logits: torch.Tensor
                           ) -> MaskableFusedMultiCategorical:
        self._set(action_logits)
        return self

    def apply_masking(self, masks: Any) -> None:
        if masks is None:
            self._normalise(self._logits)
            return
        mask = torch.as_tensor(masks, dtype=torch.bool, device=self._logits.device)
        mask = mask.reshape(self._logits.shape)
        self._normalise(torch.where(mask, self._logits,
                                    torch.tensor(_HUGE_NEG, dtype=self._logits.dtype)))


class FusedMlpPolicy(ActorCriticPolicy):
    """``MlpPolicy`` with :class:`FusedMultiCategorical` for ``MultiDiscrete`` actions."""

    def _build(self, lr_schedule: Any) -> None:
        if isinstance(self.action_dist, MultiCategoricalDistribution):
            self.action_dist = FusedMultiCategorical(self.action_space.nvec)
        super()._build(lr_schedule)


class MaskableFusedMlpPolicy(MaskableActorCriticPolicy):
    """sb3-contrib's masked ``MlpPolicy`` with :class:`MaskableFusedMultiCategorical`."""

    def _build(self, lr_schedule: Any) -> None:
        if isinstance(self.action_dist, MaskableMultiCategoricalDistribution):
            self.action_dist = MaskableFusedMultiCategorical(self.action_space.nvec)
        super()._build(lr_schedule)
