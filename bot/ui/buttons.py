"""Buttons and menus on job cards. Their custom ids carry the job id, so they work after a restart.

Each one hands the click to the bot's job actions (cogs/jobs.py), which does the work.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from providers.hidream.models import Style

LABELS = {
    "cancel": ("Cancel", discord.ButtonStyle.danger),
    "retry": ("Retry", discord.ButtonStyle.primary),
    "reroll": ("Reroll", discord.ButtonStyle.secondary),
    "stylize": ("Stylize", discord.ButtonStyle.secondary),
}


class JobActions(Protocol):
    """What a click on a job's button or menu asks for."""

    async def on_button(self, interaction: discord.Interaction[Any], action: str, job_id: int) -> None: ...

    async def on_style(self, interaction: discord.Interaction[Any], job_id: int, style: str) -> None: ...


def _actions(interaction: discord.Interaction[Any]) -> JobActions:
    actions: JobActions = interaction.client.job_actions
    return actions


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:(?P<action>[a-z]+):(?P<id>\d+)"):
    """Cancel, Retry, Reroll or Stylize one job."""

    def __init__(self, action: str, job_id: int) -> None:
        label, style = LABELS[action]
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
        await _actions(interaction).on_button(interaction, self.action, self.job_id)


class StyleMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"style:(?P<id>\d+)"):
    """Pick a HiDream style to restyle a finished job's video."""

    def __init__(self, job_id: int) -> None:
        options = [discord.SelectOption(label=style.value.replace("_", " "), value=style.value) for style in Style]
        super().__init__(discord.ui.Select(custom_id=f"style:{job_id}", placeholder="Pick a style", options=options))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StyleMenu:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).on_style(interaction, self.job_id, self.item.values[0])
