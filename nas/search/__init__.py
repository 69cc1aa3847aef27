"""The search: Optuna proposes archs, Ray Tune runs them as trials, three objectives under hard budgets.

``params`` maps an arch to the search parameters and back; ``constraints`` says what is over the budget;
``samplers`` makes the Optuna samplers; ``score`` is what the search maximises of an arch's evaluation; ``guard``
keeps over-budget and repeated archs from becoming trials;
``trial`` evaluates one arch; ``driver`` runs the Tune experiment; ``outputs`` writes trials.csv, pareto.json and
the plot."""
