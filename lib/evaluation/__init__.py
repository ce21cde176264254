"""Stages 3-5 (notebooks 03, 04, 05): measuring. ROUGE, Kendall tau and their CIs (``metrics``); notebook 03's
side-by-side decoding of one user (``sweep``); policy accuracy by teacher forcing (``policy_accuracy``) and the
selection of ``w`` on validation pairs (``selection``); in-context learning prompts (``icl``); base / RGD / ICL
generations scored against the users' outputs (``generation``) and their sharding over processes (``shard``); your
own reward model scored by all of these on your own pairs and queries (``own_rm``, which reads them with ``own_data``)."""
