"""Personalized reward models: one interface, several methods.

Contract (shared with lib/decoding/rgd.py and lib/evaluation/policy_accuracy.py):

* a reward model is ``head(features, user_idx)`` on top of a frozen featurizer named by
  ``backbone`` (a registry name, see lib/core/models.py) of ``feature_kind`` "lm_last" (causal LM
  last_hidden_state; a full response is read at an appended end-of-sequence token, the state
  decoding scores when it considers stopping, see lib/rewards/features.py) or "encoder_mean" (MiniLM);
* ``users`` lists the users it knows; ``user_index(users)`` maps ids to rows and raises a clear
  ``KeyError`` for an unknown user (call ``adapt`` first);
* ``shares_policy(policy_name)`` says whether its features are the policy's own hidden states
  (RGD path a); ``finetuned`` backbones (LoRA) never share.

Methods (all heads read standardised features ``x = (f - mu) / sd``, statistics of the training
pairs' full-response features and, when the :class:`PairFeatures` have them, their prefix features,
the states reward-guided decoding scores; so one learning rate suits every backbone):

=================  ==========================================================================
``bt``             ``r(x) = w.x``: one Bradley-Terry reward for all users (Bradley & Terry 1952;
                   Ouyang et al. 2022).
``individual``     ``r(x, u) = w_u.x``: a separate head per user, fitted on that user's pairs only.
``user_embedding`` ``r(x, u) = (w + U e_u).x``: a shared reward conditioned on a learned user
                   embedding e_u (P-RM, Li et al. 2024, "Personalized language modeling from
                   personalized human feedback"). With a frozen backbone the embedding can only act
                   through an interaction with the response features; the bilinear form is the
                   simplest one (P-RM feeds e_u as soft tokens through the whole LM).
``lore``           ``r(x, u) = sum_k a_uk (b_k.x)``, ``a_u`` on the simplex: a shared low-rank basis
                   of K reward functions (LoRe, Bose et al. 2025).
``pal``            ``r(x, u) = -||P x - sum_k a_uk q_k||^2``, ``a_u`` on the simplex: K prototype
                   ideal points in a learned space, each user a mixture of them (PAL, Chen et al.,
                   ICLR 2025, ideal-point model). P starts random, as PAL's connector does (a zero P
                   gives every response the same reward and the user weights no gradient).
``vpl``            ``r(x, z) = (w + U z).x`` with ``z ~ q(z | user's context pairs)``: a Gaussian
                   latent from a permutation-invariant encoder (mean-pooled MLP of the feature
                   differences chosen - rejected), trained with the BT loss plus beta * KL(q || N(0, I))
                   (VPL, Poddar et al. 2024). A training pair's context never contains that pair. The
                   posterior mean of each known user is stored, so ``head`` works like the other
                   methods; unseen users need no training.
=================  ==========================================================================

Training (:func:`train`): BT loss, AdamW (lr 1e-3: at 1e-2 heads on 384-d features of a few pairs per
user overfit within one step), gradients clipped. Validation rule (``val_rule``): ``"holdout"``
holds out ``round(val_frac * N)`` training pairs drawn across users, never a user's last pair, and
keeps the epoch >= 1 of lowest validation loss (``patience`` epochs without improvement stop);
the initial heads are not a candidate (zero heads tie on every pair). With fewer than ``min_val``
such pairs, ``"fixed_epochs"``: every pair trains for ``min(epochs, fixed_epochs)`` epochs and
``val_acc`` is NaN (never a training accuracy). A diverging run is retried with lr / 10 (twice).
A model whose rewards are (nearly) constant on its validation pairs (training pairs if none), or
that never left its initial weights, is flagged in ``metrics["degenerate"]`` (a reason; "" when fine)
with a warning; :func:`train_zoo` records the flag (and skips a model that still diverges) and
:func:`accuracy_table` averages only unflagged seeds and counts the flagged ones.

Calibration: every trained model stores ``cal_mu`` / ``cal_sd``, the mean and sd of its rewards (each
pair's own user) on the prefix and full-response features of its training pairs (full only when no
prefixes were computed, and for the LoRA path). :meth:`RewardModel.guidance` is the reward that
decoding adds to logits: ``(r - cal_mu) / cal_sd`` when ``rm.calibrated`` (default; set by
``load_reward_model(..., calibrated=...)``), else the raw ``head``. Adapted users keep the model's
calibration.

Modules: ``pairs`` (:class:`PairFeatures`: features of preference pairs), ``base`` (the :class:`RewardModel`
interface), ``heads`` (one class per method, :data:`METHODS`, :func:`load_reward_model`), ``loop`` (the BT loss and the one
optimisation loop that training, LoRA fine-tuning and few-shot adaptation share), ``fit`` (:func:`train`,
:func:`check_methods`), ``zoo``
(:func:`rm_accuracy`, :func:`adapt_unseen`, :func:`train_zoo`, :func:`train_zoos`, :func:`accuracy_table`
and the RM index: :func:`read_rm_index`, :func:`select_rms`, :func:`load_task_rms`), ``seq_cls`` (a Hugging Face
sequence-classification checkpoint as a text-path reward model, :func:`~lib.rewards.seq_cls.load_any_reward_model`).
Saved reward models are ``config.json`` + ``model.safetensors`` (older releases wrote ``model.pt``: still read,
with a FutureWarning, :func:`lib.rewards.base.read_weights`).

Public API (``from lib import rewards``): :class:`PairFeatures`; :class:`RewardModel` (:meth:`~RewardModel.adapt`,
:meth:`~RewardModel.adapt_users`, :meth:`~RewardModel.score`, :meth:`~RewardModel.score_prefixes`,
:meth:`~RewardModel.guidance`, :meth:`~RewardModel.decoding_path`, :meth:`~RewardModel.save`) and its methods
``BT``, ``Individual``, ``UserEmbedding``, ``LoRe``, ``PAL``, ``VPL``; :data:`METHODS`, :func:`check_methods`,
:func:`load_reward_model`; :func:`train`, :func:`device_of`; :func:`rm_accuracy`, :func:`pair_correct`,
:func:`adapt_unseen`, :func:`model_name`, :func:`train_zoo`, :func:`train_zoos`, :func:`flagged`,
:func:`accuracy_table`, :func:`rm_name`, :func:`read_rm_index`, :func:`select_rms`, :func:`load_task_rms`.
"""
from .base import RewardModel
from .fit import check_methods, device_of, train
from .heads import BT, METHODS, PAL, VPL, Individual, LoRe, UserEmbedding, load_reward_model
from .pairs import PairFeatures
from .zoo import (
           accuracy_table,
           adapt_unseen,
           flagged,
           load_task_rms,
           model_name,
           pair_correct,
           read_rm_index,
           rm_accuracy,
           rm_name,
           select_rms,
           train_zoo,
           train_zoos,
)

__all__ = ["BT", "METHODS", "PAL", "VPL", "Individual", "LoRe", "PairFeatures", "RewardModel", "UserEmbedding",
           "accuracy_table", "adapt_unseen", "check_methods", "device_of", "flagged", "load_reward_model", "load_task_rms",
           "model_name", "pair_correct", "read_rm_index", "rm_accuracy", "rm_name", "select_rms", "train", "train_zoo",
           "train_zoos"]
