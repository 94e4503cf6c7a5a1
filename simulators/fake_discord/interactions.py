"""Builders for INTERACTION_CREATE payloads: slash commands, autocomplete, buttons, selects and modals."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from .models import WRITE_PERMISSIONS, FakeChannel, FakeGuild, FakeMember, FakeMessage, FakeRole, FakeUser

if TYPE_CHECKING:
    from .server import FakeDiscord

DEFAULT_ATTACHMENT_SIZE_LIMIT: Final = 10 * 1024 * 1024
SUBCOMMAND: Final = 1
SUBCOMMAND_GROUP: Final = 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


def infer_option_type(value: Any) -> int:
    """Discord's option type for a Python value (bool 5, int 4, float 10, str 3, users/channels/roles/files)."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, FakeUser):
        return USER
    if isinstance(value, FakeChannel):
        return CHANNEL
    if isinstance(value, FakeRole):
        return ROLE
    if isinstance(value, dict) and "filename" in value and "id" in value:
        return ATTACHMENT
    return STRING


def _host(builders: InteractionBuilders) -> FakeDiscord:
    """The :class:`FakeDiscord` these builders are mixed into (the one class that mixes them in).

    A cast, not ``self: FakeDiscord`` on each method: mypy refuses a self type that is a subclass of the mixin.
    """
    return cast("FakeDiscord", builders)


class InteractionBuilders:
    """Mixed into :class:`FakeDiscord`; every builder returns a payload for :meth:`FakeDiscord.push_interaction`."""

    def _base_interaction(
        self,
        kind: int,
        *,
        user: FakeUser | int | None,
        channel: FakeChannel | int | None,
        guild: FakeGuild | int | None,
        locale: str,
        attachment_size_limit: int | None,
    ) -> dict[str, Any]:
        fake = _host(self)
        interaction_id = fake.snowflakes.next()
        who = fake._user(user) if user is not None else fake.user
        where = fake._channel(channel) if channel is not None else fake.channel
        if guild is not None:
            home: FakeGuild | None = fake._guild(guild)
        else:
            home = fake.get_guild(where.guild_id) if where.guild_id is not None else None
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(fake.app_id),
            "type": kind,
            "token": f"itoken-{interaction_id}-{secrets.token_hex(24)}",
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": attachment_size_limit or DEFAULT_ATTACHMENT_SIZE_LIMIT,
            "channel_id": str(where.id),
            "channel": where.payload(),
        }
        if home is not None:
            member = home.members.get(who.id) or FakeMember(user=who, joined_at=fake.now())
            permissions = home.permissions_of(who.id)
            app_permissions = home.permissions_of(fake.bot_user.id) if home.bot_joined else permissions
            if where.forbidden:
                app_permissions &= ~WRITE_PERMISSIONS
            payload["channel"]["permissions"] = str(permissions)
            payload.update(
                guild_id=str(home.id),
                guild={"id": str(home.id), "locale": home.locale, "features": home.features},
                guild_locale=home.locale,
                member={**fake.member_payload(home, member), "permissions": str(permissions)},
                app_permissions=str(app_permissions),
                authorizing_integration_owners={"0": str(home.id)} if home.bot_joined else {"1": str(who.id)},
                context=0,
            )
        else:
            bot_dm = where.type == 1 and any(recipient.id == who.id for recipient in where.recipients)
            payload.update(
                user=who.payload(),
                app_permissions=str(WRITE_PERMISSIONS),
                authorizing_integration_owners={"0": "0"} if bot_dm else {"1": str(who.id)},
                context=1 if bot_dm else 2,
            )
        return payload

    def slash(
        self,
        name: str,
        *,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, dict[str, Any]] | None = None,
        option_types: Mapping[str, int] | None = None,
        user: FakeUser | int | None = None,
        channel: FakeChannel | int | None = None,
        guild: FakeGuild | int | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
        guild_command: bool | None = None,
    ) -> dict[str, Any]:
        """A type-2 (CHAT_INPUT) interaction.

        ``subcommand`` is ``"sub"`` or ``"group sub"``. Option types come from ``option_types``, else from the
        synced command definition, else from the Python value (see :func:`infer_option_type`); ``attachments``
        maps option names to objects from :meth:`FakeDiscord.add_attachment`. ``guild_command`` forces
        (True) or drops (False) ``data.guild_id``; by default it is set when the command was synced to the guild.
        """
        fake = _host(self)
        return fake._command_interaction(
            2,
            name,
            subcommand=subcommand,
            values={**(options or {}), **(attachments or {})},
            option_types={**dict.fromkeys(attachments or {}, ATTACHMENT), **(option_types or {})},
            focused=None,
            user=user,
            channel=channel,
            guild=guild,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
            guild_command=guild_command,
        )

    def autocomplete(
        self,
        name: str,
        *,
        focused: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        option_types: Mapping[str, int] | None = None,
        user: FakeUser | int | None = None,
        channel: FakeChannel | int | None = None,
        locale: str = "en-US",
        guild_command: bool | None = None,
    ) -> dict[str, Any]:
        """A type-4 (autocomplete) interaction; ``focused`` names the option being typed."""
        fake = _host(self)
        return fake._command_interaction(
            4,
            name,
            subcommand=subcommand,
            values=dict(options or {}),
            option_types=dict(option_types or {}),
            focused=focused,
            user=user,
            channel=channel,
            guild=None,
            locale=locale,
            attachment_size_limit=None,
            guild_command=guild_command,
        )

    def _command_interaction(
        self,
        kind: int,
        name: str,
        *,
        subcommand: str | None,
        values: Mapping[str, Any],
        option_types: Mapping[str, int],
        focused: str | None,
        user: FakeUser | int | None,
        channel: FakeChannel | int | None,
        guild: FakeGuild | int | None,
        locale: str,
        attachment_size_limit: int | None,
        guild_command: bool | None,
    ) -> dict[str, Any]:
        fake = _host(self)
        payload = fake._base_interaction(
            kind,
            user=user,
            channel=channel,
            guild=guild,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        guild_id = int(payload["guild_id"]) if "guild_id" in payload else None
        command = fake.registered_command(name, guild_id)
        path = subcommand.split() if subcommand else []
        definitions: list[dict[str, Any]] = command.get("options", []) if command else []
        for part in path:
            node = next((option for option in definitions if option.get("name") == part), {})
            definitions = node.get("options", [])
        declared = {option.get("name"): option.get("type") for option in definitions}
        home = fake.get_guild(guild_id) if guild_id is not None else None
        resolved: dict[str, dict[str, Any]] = {}
        encoded = []
        for option_name, value in values.items():
            if focused is not None and option_name == focused:
                encoded.append({"name": option_name, "type": STRING, "value": str(value), "focused": True})
                continue
            option_type = option_types.get(option_name) or declared.get(option_name) or infer_option_type(value)
            encoded.append(fake._encode_option(option_name, value, int(option_type), resolved, home))
        if focused is not None and focused not in values:
            focused_type = option_types.get(focused) or declared.get(focused) or STRING
            encoded.append({"name": focused, "type": focused_type, "value": "", "focused": True})
        for depth, part in enumerate(reversed(path)):
            encoded = [{"name": part, "type": SUBCOMMAND if depth == 0 else SUBCOMMAND_GROUP, "options": encoded}]
        if command is not None:
            command_id = command["id"]
        else:
            command_id = str(fake._command_ids.setdefault((None, f"adhoc:{name}"), fake.snowflakes.next()))
        data: dict[str, Any] = {"id": command_id, "name": name, "type": 1, "options": encoded}
        if guild_command is None:
            scoped = command.get("guild_id") if command else None
        else:
            scoped = str(guild_id) if guild_command and guild_id is not None else None
        if scoped is not None:
            data["guild_id"] = scoped
        if resolved:
            data["resolved"] = resolved
        payload["data"] = data
        return payload

    def _encode_option(
        self,
        name: str,
        value: Any,
        option_type: int,
        resolved: dict[str, dict[str, Any]],
        home: FakeGuild | None,
    ) -> dict[str, Any]:
        fake = _host(self)
        if option_type == ATTACHMENT:
            attachment = value if isinstance(value, dict) else fake.attachment_payload(fake.stored_attachment(value))
            resolved.setdefault("attachments", {})[str(attachment["id"])] = attachment
            return {"name": name, "type": ATTACHMENT, "value": str(attachment["id"])}
        if option_type == MENTIONABLE:
            option_type = ROLE if isinstance(value, FakeRole) else USER
            encoded = fake._encode_option(name, value, option_type, resolved, home)
            return {**encoded, "type": MENTIONABLE}
        if option_type == USER:
            user = fake._user(value)
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            member = home.members.get(user.id) if home else None
            if home is not None and member is not None:
                member_data = fake.member_payload(home, member, with_user=False)
                member_data["permissions"] = str(home.permissions_of(user.id))
                resolved.setdefault("members", {})[str(user.id)] = member_data
            return {"name": name, "type": USER, "value": str(user.id)}
        if option_type == CHANNEL:
            channel = fake._channel(value)
            channel_data = {**channel.payload(), "permissions": str(home.permissions_of(fake.user.id) if home else 0)}
            resolved.setdefault("channels", {})[str(channel.id)] = channel_data
            return {"name": name, "type": CHANNEL, "value": str(channel.id)}
        if option_type == ROLE:
            role = value if isinstance(value, FakeRole) else (home.role(int(value)) if home else None)
            if role is None:
                raise KeyError(f"unknown role {value!r}")
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return {"name": name, "type": ROLE, "value": str(role.id)}
        converters = {STRING: str, INTEGER: int, BOOLEAN: bool, NUMBER: float}
        converter = converters.get(option_type)
        if converter is None:
            raise ValueError(f"option {name!r}: unsupported option type {option_type}")
        return {"name": name, "type": option_type, "value": converter(value)}

    def _target_message(self, custom_id: str, message: FakeMessage | int | None) -> FakeMessage:
        fake = _host(self)
        if isinstance(message, FakeMessage):
            return message
        if message is not None:
            found = fake.message(int(message))
            if found is None:
                raise KeyError(f"unknown message {message}")
            return found
        for candidate in reversed(fake.messages()):
            if custom_id in candidate.custom_ids():
                return candidate
        raise LookupError(f"no stored message has a component with custom_id {custom_id!r}")

    def click(
        self,
        custom_id: str,
        message: FakeMessage | int | None = None,
        *,
        user: FakeUser | int | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
    ) -> dict[str, Any]:
        """A type-3 component interaction on a stored message (default: the newest one carrying ``custom_id``)."""
        fake = _host(self)
        target = fake._target_message(custom_id, message)
        payload = fake._base_interaction(
            3,
            user=user,
            channel=target.channel_id,
            guild=None,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        payload["message"] = fake.message_payload(target)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        payload["data"] = data
        return payload

    def select(
        self,
        custom_id: str,
        values: list[str],
        message: FakeMessage | int | None = None,
        *,
        user: FakeUser | int | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """A string-select (component type 3) interaction with the chosen ``values``."""
        fake = _host(self)
        return fake.click(custom_id, message, user=user, component_type=3, values=values, locale=locale)

    def modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        message: FakeMessage | int | None = None,
        user: FakeUser | int | None = None,
        channel: FakeChannel | int | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """A type-5 modal submit: one text input (type 4) per ``values`` item, each in its own action row."""
        fake = _host(self)
        target = None
        if message is not None:
            target = message if isinstance(message, FakeMessage) else fake.message(int(message))
        where = target.channel_id if target is not None else channel
        payload = fake._base_interaction(
            5, user=user, channel=where, guild=None, locale=locale, attachment_size_limit=None
        )
        if target is not None:
            payload["message"] = fake.message_payload(target)
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]} for key, value in values.items()
        ]
        payload["data"] = {"custom_id": custom_id, "components": rows}
        return payload
