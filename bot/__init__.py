"""The Discord bot: settings, the composition root, the job ledger, the scheduler and the Discord side."""
