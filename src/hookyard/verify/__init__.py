"""Request verification: one immutable, thread-safe `Verifier` per source, built from config.

All configuration errors surface here, at build time, as `ConfigError`s naming the option;
at request time a verifier raises nothing but `VerificationError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points

from hookyard.errors import ConfigError
from hookyard.verify.asymmetric import DiscordVerifier, SendGridVerifier
from hookyard.verify.base import (
    SCHEME_OPTIONS,
    Handshake,
    Inbound,
    SchemeDoc,
    Verified,
    Verifier,
    VerifyOptions,
)
from hookyard.verify.generic import GenericHmacVerifier
from hookyard.verify.hmac_body import GitHubVerifier, ShopifyVerifier
from hookyard.verify.hubspot import HubSpotVerifier
from hookyard.verify.mailgun import MailgunVerifier
from hookyard.verify.mollie import MollieVerifier
from hookyard.verify.msgraph import MicrosoftGraphVerifier
from hookyard.verify.paypal import PayPalVerifier
from hookyard.verify.providers import (
    CalendlyVerifier,
    GitLabVerifier,
    IntercomVerifier,
    JiraVerifier,
    LinearVerifier,
    PaddleVerifier,
    SquareVerifier,
    TwitchVerifier,
    TypeformVerifier,
    ZoomVerifier,
)
from hookyard.verify.simple import BasicAuthVerifier, NoneVerifier, TokenVerifier
from hookyard.verify.slack import SlackVerifier
from hookyard.verify.sns import SnsVerifier
from hookyard.verify.standard import StandardWebhooksVerifier, SvixVerifier
from hookyard.verify.stripe import StripeVerifier
from hookyard.verify.twilio import TwilioVerifier

__all__ = [
    "SCHEMES",
    "SCHEME_OPTIONS",
    "BasicAuthVerifier",
    "CalendlyVerifier",
    "DiscordVerifier",
    "GenericHmacVerifier",
    "GitHubVerifier",
    "GitLabVerifier",
    "Handshake",
    "HubSpotVerifier",
    "Inbound",
    "IntercomVerifier",
    "JiraVerifier",
    "LinearVerifier",
    "MailgunVerifier",
    "MicrosoftGraphVerifier",
    "MollieVerifier",
    "NoneVerifier",
    "PaddleVerifier",
    "PayPalVerifier",
    "SchemeDoc",
    "SendGridVerifier",
    "ShopifyVerifier",
    "SlackVerifier",
    "SnsVerifier",
    "SquareVerifier",
    "StandardWebhooksVerifier",
    "StripeVerifier",
    "SvixVerifier",
    "TokenVerifier",
    "TwilioVerifier",
    "TwitchVerifier",
    "TypeformVerifier",
    "Verified",
    "Verifier",
    "VerifyOptions",
    "ZoomVerifier",
    "build_verifier",
    "check_options",
    "scheme_doc",
]

_Factory = Callable[[Sequence[str], VerifyOptions], Verifier]

_FACTORIES: dict[str, _Factory] = {
    "standard": StandardWebhooksVerifier,
    "svix": SvixVerifier,
    "stripe": StripeVerifier,
    "github": GitHubVerifier,
    "shopify": ShopifyVerifier,
    "slack": SlackVerifier,
    "paddle": PaddleVerifier,
    "square": SquareVerifier,
    "zoom": ZoomVerifier,
    "linear": LinearVerifier,
    "intercom": IntercomVerifier,
    "typeform": TypeformVerifier,
    "calendly": CalendlyVerifier,
    "twitch": TwitchVerifier,
    "jira": JiraVerifier,
    "gitlab": GitLabVerifier,
    "twilio": TwilioVerifier,
    "discord": DiscordVerifier,
    "mailgun": MailgunVerifier,
    "msgraph": MicrosoftGraphVerifier,
    "hubspot": HubSpotVerifier,
    "sendgrid": SendGridVerifier,
    "mollie": MollieVerifier,
    "sns": SnsVerifier,
    "paypal": PayPalVerifier,
    "hmac": GenericHmacVerifier,
    "basic": BasicAuthVerifier,
    "token": TokenVerifier,
    "none": NoneVerifier,
}

SCHEMES: tuple[str, ...] = tuple(_FACTORIES)


def scheme_doc(scheme: str) -> SchemeDoc | None:
    """A built-in scheme's reference entry; None for plugins and unknown names."""
    doc = getattr(_FACTORIES.get(scheme), "doc", None)
    return doc if isinstance(doc, SchemeDoc) else None


def check_options(scheme: str, written: Collection[str]) -> None:
    """Refuse a scheme option (SCHEME_OPTIONS) that the source's config sets although its
    built-in scheme never reads it: it would do nothing, silently. `written` holds the keys
    the config sets, defaults aside. Plugins declare no options, so they are not checked."""
    doc = scheme_doc(scheme)
    if doc is None:
        return
    for option in SCHEME_OPTIONS:
        if option in written and option not in doc.options:
            reads = ", ".join(doc.options) or "none of them"
            raise ConfigError(option, f'does not apply to verify = "{scheme}"; it reads: {reads}')


ENTRY_POINTS = "hookyard.verifiers"  # where installed packages register their own schemes


def _plugin(scheme: str) -> _Factory | None:
    """A scheme from outside Hookyard: `package.module:Class`, or a name an installed package
    registers under the `hookyard.verifiers` entry point group. The class is called like the
    built-in ones, `Class(secrets, options)`, and must provide `verify`, `sign`, `scheme` and
    `credential_headers` (see base.Verifier)."""
    if ":" in scheme:
        module_name, _, attribute = scheme.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("verify", f"cannot load verifier {scheme!r}: {exc}") from None
    else:
        matches = entry_points(group=ENTRY_POINTS, name=scheme)
        if not matches:
            return None
        found = next(iter(matches)).load()
    missing = [name for name in ("verify", "sign") if not callable(getattr(found, name, None))]
    if not callable(found) or missing:
        raise ConfigError(
            "verify", f"{scheme!r} is not a verifier class (it lacks {', '.join(missing)})"
        )
    factory: _Factory = found
    return factory


def build_verifier(scheme: str, secrets: Sequence[str], options: VerifyOptions) -> Verifier:
    """The verifier for a source; raises `ConfigError` (key = the offending option) if the
    scheme is unknown or its options or secrets cannot work."""
    factory = _FACTORIES.get(scheme) or _plugin(scheme)
    if factory is None:
        raise ConfigError(
            "verify",
            f"unknown scheme {scheme!r}; expected one of: {', '.join(SCHEMES)}, a scheme an "
            f"installed package registers ({ENTRY_POINTS} entry points), or module:Class",
        )
    verifier = factory(secrets, options)
    for attribute in ("scheme", "credential_headers"):
        if not hasattr(verifier, attribute):
            raise ConfigError("verify", f"verifier {scheme!r} has no {attribute!r} attribute")
    return verifier
