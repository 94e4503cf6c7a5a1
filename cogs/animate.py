"""/animate hidream|pixverse|vidu and /stylize. Option names are a contract (README, "Commands and
options"); their descriptions, choices, ranges and lengths come from the providers' capability tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str

from bot.i18n.commands import choice_name
from bot.ui.intake import AttachmentRef
from cogs.common import start_job
from providers import Capabilities, Operation
from providers.hidream.capabilities import IMAGE_TO_VIDEO as HIDREAM
from providers.hidream.capabilities import STYLIZE
from providers.pixverse.capabilities import IMAGE_TO_VIDEO as PIXVERSE
from providers.vidu.capabilities import IMAGE_TO_VIDEO as VIDU

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

IMAGE_HELP = locale_str("The picture to animate (PNG, JPEG or WebP).")
NOT_OPTIONS = ("interaction", "image", "video")
VIDEO_HELP = locale_str("The MP4 video to restyle.")


@app_commands.command(name="hidream", description=locale_str("Animate an image with HiDream."))
async def hidream(
    interaction: discord.Interaction[Any],
    image: discord.Attachment,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    resolution: str | None = None,
    camera_horizontal: int | None = None,
    camera_vertical: int | None = None,
    camera_depth: int | None = None,
    motion_strength: float | None = None,
) -> None:
    await start_job(interaction, "hidream", Operation.IMAGE_TO_VIDEO, AttachmentRef.of(image), options_of(locals()))


@app_commands.command(name="pixverse", description=locale_str("Animate an image with PixVerse."))
async def pixverse(
    interaction: discord.Interaction[Any],
    image: discord.Attachment,
    prompt: str,
    model: str | None = None,
    duration: int | None = None,
    quality: str | None = None,
    motion_mode: str | None = None,
    camera_movement: str | None = None,
    style: str | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    audio: bool | None = None,
    multi_clip: bool | None = None,
    thinking: str | None = None,
    sound_effect: str | None = None,
    lip_sync_text: str | None = None,
    lip_sync_voice: str | None = None,
) -> None:
    await start_job(interaction, "pixverse", Operation.IMAGE_TO_VIDEO, AttachmentRef.of(image), options_of(locals()))


@app_commands.command(name="vidu", description=locale_str("Animate an image with Vidu."))
async def vidu(
    interaction: discord.Interaction[Any],
    image: discord.Attachment,
    prompt: str,
    model: str | None = None,
    duration: int | None = None,
    resolution: str | None = None,
    movement_amplitude: str | None = None,
    seed: int | None = None,
    audio: bool | None = None,
    voice_id: str | None = None,
    off_peak: bool | None = None,
    recommend_prompt: bool | None = None,
) -> None:
    await start_job(interaction, "vidu", Operation.IMAGE_TO_VIDEO, AttachmentRef.of(image), options_of(locals()))


@app_commands.command(
    name="stylize", description=locale_str("Restyle a video with HiDream (pick a style or describe one).")
)
async def stylize(
    interaction: discord.Interaction[Any],
    video: discord.Attachment,
    style: str | None = None,
    prompt: str | None = None,
) -> None:
    await start_job(interaction, "hidream", Operation.STYLIZE, AttachmentRef.of(video), options_of(locals()))


def options_of(arguments: dict[str, Any]) -> dict[str, Any]:
    """A command's provider options: its arguments, by their contract names, less the interaction and the file."""
    return {name: value for name, value in arguments.items() if name not in NOT_OPTIONS}


def describe(command: app_commands.Command[Any, Any, Any], caps: Capabilities, media: tuple[str, locale_str]) -> None:
    """Give every option its description, choices, range and length from the capability table.

    Descriptions and word-valued choice names are ``locale_str``: discord.py passes only those to the Translator
    (it converted plain strings when the decorator ran, before these were set)."""
    parameters = command._params  # discord.py keeps the parsed options here; they are plain dataclasses.
    media_name, media_help = media
    parameters[media_name].description = media_help
    for spec in caps.options:
        parameter = parameters[spec.name]
        parameter.description = locale_str(spec.description)
        if spec.choices:
            parameter.choices = [
                app_commands.Choice(name=choice_name(spec.name, value), value=value) for value in spec.choices
            ]
        if spec.min_value is not None:
            parameter.min_value = spec.min_value
        if spec.max_value is not None:
            parameter.max_value = spec.max_value
        if spec.max_length is not None:
            # discord.py sends a string option's min/max as its min_length/max_length.
            parameter.max_value = spec.max_length


describe(hidream, HIDREAM, ("image", IMAGE_HELP))
describe(pixverse, PIXVERSE, ("image", IMAGE_HELP))
describe(vidu, VIDU, ("image", IMAGE_HELP))
describe(stylize, STYLIZE, ("video", VIDEO_HELP))

SUBCOMMANDS: dict[str, app_commands.Command[Any, Any, None]] = {
    "hidream": hidream,
    "pixverse": pixverse,
    "vidu": vidu,
}


async def setup(bot: AnimateBot) -> None:
    """Register only what the configured providers can do."""
    enabled = [name for name in SUBCOMMANDS if name in bot.providers]
    if enabled:
        group = app_commands.Group(name="animate", description=locale_str("Turn an image into a video."))
        for name in enabled:
            group.add_command(SUBCOMMANDS[name])
        bot.tree.add_command(group)
    if "hidream" in bot.providers:
        bot.tree.add_command(stylize)
