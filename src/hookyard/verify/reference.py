"""The provider reference, rendered from each built-in verifier's `doc` (a `SchemeDoc`).

docs/providers.md is this module's output, and a test compares the two, so the page cannot
drift from the code. Regenerate it with `python -m hookyard.verify.reference > docs/providers.md`.
`hookyard schemes` prints its listing, and any one section, in the terminal.
"""

from __future__ import annotations

import sys

from hookyard.verify import SCHEME_OPTIONS, SCHEMES, SchemeDoc, scheme_doc

REGENERATE = "python -m hookyard.verify.reference > docs/providers.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{key}`" for key in keys)


_INTRO = f"""\
# Verification schemes

<!-- Generated from the `doc` of each verifier class in src/hookyard/verify/ by
`{REGENERATE}`; edit those, not this page. -->

A webhook source names how its requests are verified with `verify = "SCHEME"` in
`[sources.NAME]`. Every scheme works on the exact raw body, compares in constant time and
accepts any of the source's `secrets` (several during a rotation). `hookyard schemes` lists
the schemes, `hookyard schemes NAME` shows one of them.

**Options.** Each scheme reads only the source keys listed under it. A scheme-specific key
that the source's scheme does not read is refused (by `hookyard check`, `serve` and a reload)
rather than silently ignored; those keys are
{_code(SCHEME_OPTIONS)}.
Where `id_header`, `type_header` and `type_field` are listed, they replace the provider's event
id and type. A scheme that signs the URL the provider called needs `[server] public_url`, the
base URL registered with the provider. Schemes from outside Hookyard (`verify = "module:Class"`
or an entry point; see the README) are not checked.
"""


def doc_of(scheme: str) -> SchemeDoc:
    """A built-in scheme's entry; KeyError for any other name."""
    doc = scheme_doc(scheme)
    if doc is None:
        raise KeyError(f"{scheme!r} is not a built-in scheme")
    return doc


def snippet(scheme: str) -> str:
    """A minimal config for the scheme: its secrets and the options it cannot do without."""
    doc = doc_of(scheme)
    lines = []
    if doc.public_url:
        lines += ["[server]", 'public_url = "https://hooks.example.com"', ""]
    lines += [f"[sources.{scheme}]", f'verify = "{scheme}"']
    if doc.secret_example is not None:
        lines.append(f'secrets = ["{doc.secret_example}"]')
    lines += [f"{key} = {value}" for key, value in doc.required]
    return "\n".join(lines)


def section(scheme: str) -> str:
    """One scheme's entry, as Markdown."""
    doc = doc_of(scheme)
    options = _code(doc.options) or "none"
    if doc.public_url:
        options += "; and `[server] public_url` (the URL is signed)"
    parts = [
        f"## `{scheme}`",
        "",
        f"**{doc.provider}** — {doc.summary}.",
        "",
        f"- **Checks:** {doc.checks}",
        f"- **Secrets:** {doc.secrets}",
        f"- **Options:** {options}",
        f"- **Event id (dedup):** {doc.dedup}",
        f"- **Event type:** {doc.event_type}",
        f"- **Body-hash dedup:** {doc.body_dedup}",
        f"- **Handshake:** {doc.handshake or 'none'}",
        "",
    ]
    if doc.notes:
        parts += [doc.notes, ""]
    parts += ["```toml", snippet(scheme), "```", ""]
    return "\n".join(parts)


def listing() -> str:
    """One line per scheme: name, provider, what is checked."""
    docs = {scheme: doc_of(scheme) for scheme in SCHEMES}
    name_width = max(map(len, docs))
    provider_width = max(len(doc.provider) for doc in docs.values())
    return "".join(
        f"{scheme:<{name_width}}  {doc.provider:<{provider_width}}  {doc.summary}\n"
        for scheme, doc in docs.items()
    )


def render() -> str:
    """The whole reference page (docs/providers.md), schemes in registry order."""
    rows = [
        "## Summary",
        "",
        "| scheme | provider | event id | event type | handshake |",
        "|---|---|---|---|---|",
    ]
    for scheme in SCHEMES:
        doc = doc_of(scheme)
        rows.append(
            f"| [`{scheme}`](#{scheme}) | {_cell(doc.provider)} | {_cell(doc.dedup)} | "
            f"{_cell(doc.event_type)} | {_cell(doc.handshake or '—')} |"
        )
    sections = [section(scheme) for scheme in SCHEMES]
    return "\n".join([_INTRO, *rows, "", *sections]).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
