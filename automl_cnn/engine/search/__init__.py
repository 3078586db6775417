"""The search phase: propose candidates, check them, train them epoch by epoch, stop the weak
ones early, and record every ending (the driver and the parts it calls)."""
