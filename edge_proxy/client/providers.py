"""`gw.providers.<name>`: a ready forward URL for every catalogue provider, as the Node SDK's `lava.providers`.

Each value is `<base>/v1/forward?u=<provider base URL>`, to which the caller appends the provider's own path
(`gw.providers.openai + "/chat/completions"`). Names come from the catalogue (edge_proxy/providers/catalogue.toml),
with `-` spelled `_` (`google_openai_compatible`), and every catalogue alias (the SDK's `googleOpenaiCompatible`).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..providers import Catalogue


class Providers(Mapping[str, str]):
    """Forward URLs by provider name: attribute access (`.openai`) and mapping access (`["groq"]`) alike.

    Iterating yields the catalogue names (`google-openai-compatible`); attribute and item lookup also take the
    `_` spelling and the aliases.
    """

    def __init__(self, api_base: str, catalogue: Catalogue | None = None) -> None:
        catalogue = catalogue or Catalogue.load()
        urls: dict[str, str] = {}
        lookup: dict[str, str] = {}
        for name, provider in catalogue.providers.items():
            url = f"{api_base}forward?u={provider.base_url}"
            urls[name] = url
            for spelling in (name, name.replace("-", "_"), *provider.aliases):
                lookup[spelling] = url
        self._urls = urls
        self._lookup = lookup

    def __getattr__(self, name: str) -> str:
        try:  # through __dict__: before __init__ has run there is no _lookup, and self._lookup would recurse
            url: str = self.__dict__["_lookup"][name]
            return url
        except KeyError:
            raise AttributeError(f"no provider named {name!r} in the catalogue") from None

    def __getitem__(self, name: str) -> str:
        try:
            return self._lookup[name]
        except KeyError:
            raise KeyError(f"no provider named {name!r} in the catalogue") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._urls)

    def __len__(self) -> int:
        return len(self._urls)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(k for k in self._lookup if k.isidentifier())})

    def __repr__(self) -> str:
        return f"Providers({len(self)} providers)"
