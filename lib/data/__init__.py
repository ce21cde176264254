"""Stage 1 (notebook 01): the data. LaMP files (``lamp``), the synthetic LaMP-format corpus (``synthetic``,
``synthetic_scenes``, ``synthetic_prefs`` for the TL;DR / PRISM / PersonalLLM layouts), Pref-LaMP pairs and
queries (``preflamp``, its non-policy rejected responses in ``rejected``, the cache of policy generations in
``gencache``) and the multi-user preference sets in the pair schema (``prefdata``)."""
