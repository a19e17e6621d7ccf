"""Search spaces. ``get_space(name)`` returns the space object; importing registers every space."""

from rtseg.spaces.base import (Decision, Network, SearchSpace, Supernet, build_model, get_space, load_arch, parse_space_options,
                               register_space, relax, space_names, space_slug, validate_arch)
from rtseg.spaces import ssr as _ssr  # noqa: F401  (registers "ssr")
from rtseg.spaces import peers as _peers  # noqa: F401  (registers "peer": hand-designed nets, not searchable)
from rtseg.spaces import cas as _cas, dcnas as _dcnas  # noqa: F401  (registers "cas", "dcnas")

__all__ = ["Decision", "Network", "SearchSpace", "Supernet", "build_model", "get_space", "load_arch", "parse_space_options",
           "register_space", "relax", "space_names", "space_slug", "validate_arch"]
