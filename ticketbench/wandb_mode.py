"""Which W&B mode a run logs in (off, offline, online), decided without importing W&B or
Lightning, so that the command line starts fast."""

from __future__ import annotations

import netrc
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from ticketbench.errors import RunError

MODES = ("off", "offline", "online")
NOT_IN_NAMES = "/\\#?%:"  # characters W&B refuses in project (and entity, group) names


@dataclass(frozen=True)
class WandbOptions:
    """``mode`` None picks: ``WANDB_MODE`` when set, else online with an API key, else offline."""

    mode: str | None = None
    project: str = "ticketbench"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """W&B's own limits, checked before anything is trained (W&B would fail inside the run)."""
        for flag, value, refused in (("--wandb-project", self.project, NOT_IN_NAMES),
                                     ("--wandb-entity", self.entity, NOT_IN_NAMES), ("--wandb-group", self.group, "")):
            fits = value is None or (0 < len(value) <= 128 and value.isprintable() and not set(value) & set(refused))
            if not fits:
                without = f" without any of {' '.join(refused)}" if refused else ""
                raise RunError(f"{flag} {value!r}: W&B takes 1-128 printable characters{without}")
        for tag in self.tags:
            if not (0 < len(tag) <= 64 and tag.isprintable()):
                raise RunError(f"--wandb-tag {tag!r}: W&B takes tags of 1-64 printable characters")


def api_key_configured() -> bool:
    """Whether W&B has an API key without asking for one: ``WANDB_API_KEY`` or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


WANDB_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "off",
               "shared": "online"}  # W&B's own values of WANDB_MODE -> ours


def resolve_mode(requested: str | None) -> str:
    """off, offline or online (``requested``, else ``WANDB_MODE``, else by the key); never a prompt:
    online only with an API key."""
    env = os.environ.get("WANDB_MODE")
    if env is not None and env.lower() not in WANDB_MODES:  # W&B itself would refuse to start
        raise RunError(f"WANDB_MODE={env!r} is not a W&B mode; valid: {', '.join(WANDB_MODES)} (or unset it and "
                       "choose with --wandb off|offline|online)")
    if requested is None and env is not None:
        requested = WANDB_MODES[env.lower()]
    if requested is None:
        requested = "online" if api_key_configured() else "offline"
    if requested == "online" and not api_key_configured():
        raise RunError("W&B online (--wandb online or WANDB_MODE) needs a W&B API key (run `wandb login` or set "
                       "WANDB_API_KEY); --wandb offline logs locally for a later `wandb sync`")
    return requested


def check_reachable(seconds: float = 10.0) -> None:
    """For an online run: refuse at once, before anything is written, when the W&B server cannot
    be reached (W&B itself would wait minutes and then fail inside the run)."""
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=seconds).close()
    except OSError as err:
        raise RunError(f"W&B online: cannot reach {url} ({err.strerror or type(err).__name__}); check the network, "
                       "or use --wandb offline and `wandb sync` later") from None
