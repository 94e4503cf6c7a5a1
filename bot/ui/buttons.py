"""Buttons and menus on job cards. Their custom ids carry the job id, so they work after a restart.

Each one hands the click to the bot as an event (``on_card_button``, ``on_card_style``,
``on_intake_retry``); the cog that owns the cards (cogs/jobs.py) listens for them and does the work.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.i18n import SOURCE_LANGUAGE, mark, translate
from providers.hidream.models import Style

LABELS = {
    # i18n: button label
    "cancel": (mark("Cancel"), discord.ButtonStyle.danger),
    # i18n: button label
    "retry": (mark("Retry"), discord.ButtonStyle.primary),
    # i18n: button label
    "reroll": (mark("Reroll"), discord.ButtonStyle.secondary),
    # i18n: button label
    "stylize": (mark("Stylize"), discord.ButtonStyle.secondary),
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:(?P<action>[a-z]+):(?P<id>\d+)"):
    """Cancel, Retry, Reroll or Stylize one job."""

    def __init__(self, action: str, job_id: int, language: str = SOURCE_LANGUAGE) -> None:
        label, style = LABELS[action]
        label = translate(language, label)
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"job:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["id"]))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return self.action in LABELS

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("card_button", interaction, self.action, self.job_id)


class StyleMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"style:(?P<id>\d+)"):
    """Pick a HiDream style to restyle a finished job's video."""

    def __init__(self, job_id: int, language: str = SOURCE_LANGUAGE) -> None:
        # A style's name is its seed-given name in Chinese (the command surface's choice names), its spelling else.
        options = [
            discord.SelectOption(label=_style_label(style.value, language), value=style.value) for style in Style
        ]
        # i18n: select option
        placeholder = translate(language, "Pick a style")
        super().__init__(discord.ui.Select(custom_id=f"style:{job_id}", placeholder=placeholder, options=options))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StyleMenu:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("card_style", interaction, self.job_id, self.item.values[0])


class IntakeRetry(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"intake:(?P<id>\d+)"):
    """Start again a command that a restart interrupted before its job was made."""

    def __init__(self, interaction_id: int, language: str = SOURCE_LANGUAGE) -> None:
        label = translate(language, LABELS["retry"][0])
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.primary, custom_id=f"intake:{interaction_id}")
        )
        self.interaction_id = interaction_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> IntakeRetry:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("intake_retry", interaction, self.interaction_id)


def _style_label(style: str, language: str) -> str:
    translated = translate(language, style)
    return translated if translated != style else style.replace("_", " ")
