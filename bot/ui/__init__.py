"""The Discord side: the bot, its command tree, the presenter that alone edits job messages, cards and buttons."""
