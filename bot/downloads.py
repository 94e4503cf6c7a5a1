"""Fetching finished videos (and inputs from finished jobs) with a size cap."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)


@dataclass(frozen=True)
class Fetched:
    """What came of one download: the body, or that it was too large, or why it could not be fetched."""

    data: bytes | None = None
    too_large: bool = False
    #: Why nothing came back (an HTTP status, a timeout, a network error); None when it was fetched or too large.
    problem: str | None = None


async def fetch(session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> Fetched:
    """The body at ``url``, telling "larger than ``max_bytes``" apart from "could not be fetched"."""
    try:
        async with session.get(url, timeout=DOWNLOAD_TIMEOUT) as response:
            if response.status != 200:
                log.info("Download answered HTTP %s", response.status)
                return Fetched(problem=f"HTTP {response.status}")
            if response.content_length is not None and response.content_length > max_bytes:
                return Fetched(too_large=True)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    return Fetched(too_large=True)
                chunks.append(chunk)
            return Fetched(data=b"".join(chunks))
    except TimeoutError:
        log.info("Download timed out")
        return Fetched(problem="timed out")
    except aiohttp.ClientError as exc:
        log.info("Download failed (%s)", type(exc).__name__)
        return Fetched(problem=type(exc).__name__)


async def download(session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes | None:
    """The body at ``url``, or None when it is larger than ``max_bytes`` or cannot be fetched."""
    return (await fetch(session, url, max_bytes=max_bytes)).data
