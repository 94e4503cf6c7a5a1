"""``python -m bot`` exactly as users run it, pointed at a fake Discord (used by the shutdown and crash tests).

The only change: discord.py's REST base and gateway URL come from FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY.
"""

from __future__ import annotations

import os
import sys

import discord
import yarl

from bot.__main__ import main

if __name__ == "__main__":
    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])
    sys.exit(main(sys.argv[1:]))
