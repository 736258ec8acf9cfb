"""Which timezone names a policy may set: the IANA zones, never a file of the tz folder
that is not one. Reads the tz database once; no other I/O."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

# Files of the tz folder that `available_timezones()` may list but that name no zone:
# `localtime` is this host's own setting (each replica would count budget periods from
# its own /etc/localtime), `posixrules` a default for POSIX TZ strings, and `Factory`
# a placeholder zone ("-00") for hosts whose zone was never set.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def iana_zone_names() -> frozenset[str]:
    """Every IANA zone and link name this host's tz database holds (`UTC`,
    `Europe/Berlin`, `Etc/GMT+5`...); read once, the tz database does not change."""
    return frozenset(available_timezones()) - NOT_ZONES


def is_iana_zone(name: str) -> bool:
    """Is `name` exactly an IANA zone (no path, no case folding: `utc` is not `UTC`)?"""
    return name in iana_zone_names()
