"""Few-shot adaptation from a lab's own labelled images.

    methods   the classifiers as pure tensor functions: prototype, linear probe, Tip-Adapter cache
    adapter   ``Adapter``: a fitted one, its files in a run directory, and how it scores
    adapt     ``fungalzsl adapt``: a run + shots -> an adapted run directory
    protocol  ``fungalzsl fewshot``: k shots per class drawn many times, scored on the rest
    report    the protocol's results.json, table and plot
    cli       the ``adapt`` and ``fewshot`` commands

Nothing is imported here, so ``fungalzsl --help`` does not load torch."""
