"""The Discord bot: configuration, composition root, and (in later steps) the job ledger and tracker."""
