"""SAC+GAARA and the methods it combines: GAARASAC, SACAE, CURLSAC, their policy and auxiliary losses.

- :mod:`~sb3_gaara.gaara.variants`: what each named variant trains the encoder with (the one table the
  zoo, the study and the Optuna samplers read);
- :mod:`~sb3_gaara.gaara.gaara_sac`: the algorithms, with the whole gradient step in one method;
- :mod:`~sb3_gaara.gaara.settings` and :mod:`~sb3_gaara.gaara.optimizer_steps`: their settings checked, and how a
  loss is applied;
- :mod:`~sb3_gaara.gaara.policies`: actor, twin critic, EMA target, decoder and ``W``;
- :mod:`~sb3_gaara.gaara.auxiliary_losses`: reconstruction, comparison and the ablations' losses.
"""
