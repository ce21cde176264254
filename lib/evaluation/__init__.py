"""Stages 3-5 (notebooks 03, 04, 05): measuring. ROUGE, Kendall tau and their CIs (``metrics``); notebook 03's
side-by-side decoding of one user (``sweep``); policy accuracy by teacher forcing (``policy_accuracy``) and the
selection of ``w`` on validation pairs (``selection``); in-context learning prompts (``icl``); base / RGD / ICL
generations scored against the users' outputs (``generation``) and their sharding over processes (``shard``)."""
