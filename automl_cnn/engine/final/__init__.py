"""The final phase: pick the winner, break ties with second seeds, plan the fits (an ensemble or
the winner alone), fit on train + the selection half of validation, and check what to deliver."""
