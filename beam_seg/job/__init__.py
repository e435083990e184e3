"""The launcher's side of a segment run: options, inputs, plan, runner layout, summary.

Nothing here runs on a worker except what the pipeline ships (the RunConfig)."""
