"""Fetching finished videos (and inputs from finished jobs) with a size cap."""

from __future__ import annotations

import logging

import aiohttp

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)


async def download(session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes | None:
    """The body at ``url``, or None when it is larger than ``max_bytes`` or cannot be fetched."""
    try:
        async with session.get(url, timeout=DOWNLOAD_TIMEOUT) as response:
            if response.status != 200:
                log.info("Download answered HTTP %s", response.status)
                return None
            if response.content_length is not None and response.content_length > max_bytes:
                return None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    return None
                chunks.append(chunk)
            return b"".join(chunks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("Download failed (%s)", type(exc).__name__)
        return None
