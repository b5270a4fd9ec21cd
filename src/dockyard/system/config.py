"""System configuration (Harbor's ``/configurations``): typed items, stored as properties.

Editable items live in the ``properties`` table, so every node sees a change at
once. Some editable items also have a start-time setting (``dockyard.yml`` /
``DOCKYARD_*``, e.g. ``token_expiration``): the setting is the value until an
administrator changes it at run time, as Harbor lets them. Items of Harbor's
``Configurations`` for features Dockyard does not have yet (UAA,
``ldap_group_attach_parallel``, scanning) are shown read-only at their off
value; a change to that value is accepted (tools send every key back), any other
is refused with a message naming the missing feature. Each item names its type,
default and allowed values, so a bad value is refused with a message that says
what would be accepted.
"""

from __future__ import annotations

import json
import re
import ssl
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from dockyard.audit import syslog
from dockyard.db.engine import dialect_insert
from dockyard.errors import BadRequestError
from dockyard.iam.models import User
from dockyard.settings import Settings
from dockyard.system import secretbox
from dockyard.system.models import Property

ConfigValue = bool | int | str


@dataclass(frozen=True, slots=True)
class ConfigItem:
    key: str
    kind: type[bool] | type[int] | type[str]
    default: ConfigValue
    editable: bool
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 1024
    from_settings: Callable[[Settings], ConfigValue] | None = None
    """For read-only items: the value comes from the start-time settings."""
    check: Callable[[str], object] | None = None
    """For strings: raises ``ValueError`` (its message is the 400's) on a bad value."""
    missing: str = ""
    """The feature Dockyard lacks that this item configures: only its off value (the
    default, false, empty) is accepted, anything else is a 400 naming the feature."""
    missing_choices: Mapping[str, str] | None = None
    """Choices that need a feature Dockyard lacks (``auth_mode: ldap_auth``)."""
    harbor: bool = True
    """Harbor's ``Configurations`` has the item; Dockyard's own (``ldap_starttls``,
    ``ldap_ca_cert``) are set like the others but ``getConfigurations`` leaves them out,
    since Harbor's clients refuse fields the schema does not name."""
    secret: bool = False
    """Never shown by ``getConfigurations`` (as Harbor hides passwords); stored
    encrypted (``system.secretbox``) when it is a real item."""

    def parse(self, raw: Any) -> ConfigValue:
        """``raw`` (from JSON) as this item's type, or a 400 that says what is allowed."""
        if self.missing and raw != self.default and raw not in (False, ""):
            raise BadRequestError(
                f"{self.key} cannot be turned on: {self.missing} is not supported by Dockyard yet"
            )
        if self.missing_choices and isinstance(raw, str) and raw in self.missing_choices:
            raise BadRequestError(
                f"{self.key} {raw} cannot be used: {self.missing_choices[raw]} is not "
                "supported by Dockyard yet"
            )
        if self.kind is bool:
            if not isinstance(raw, bool):
                raise BadRequestError(f"{self.key} must be true or false")
            return raw
        if self.kind is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise BadRequestError(f"{self.key} must be an integer")
            if (self.minimum is not None and raw < self.minimum) or (
                self.maximum is not None and raw > self.maximum
            ):
                raise BadRequestError(
                    f"{self.key} must be between {self.minimum} and {self.maximum}"
                )
            return raw
        if not isinstance(raw, str):
            raise BadRequestError(f"{self.key} must be a string")
        if self.choices and raw not in self.choices:
            raise BadRequestError(f"{self.key} must be one of {', '.join(self.choices)}")
        if len(raw) > self.max_length or any(ord(c) < 0x20 and c not in "\t\n" for c in raw):
            raise BadRequestError(
                f"{self.key} must be at most {self.max_length} printable characters"
            )
        if self.check is not None:
            try:
                self.check(raw)
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
        return raw

    def decode(self, stored: str) -> ConfigValue:
        if self.kind is bool:
            return stored == "true"
        if self.kind is int:
            try:
                return int(stored)
            except ValueError:
                return self.default
        return stored

    def encode(self, value: ConfigValue) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


SELF_REGISTRATION = "self_registration"
PROJECT_CREATION_RESTRICTION = "project_creation_restriction"
ROBOT_TOKEN_DURATION = "robot_token_duration"  # noqa: S105 - a setting name, not a secret
BANNER_MESSAGE = "banner_message"
STORAGE_PER_PROJECT = "storage_per_project"
"""The storage quota (bytes) of a new project; -1 unlimited."""
NOTIFICATION_ENABLE = "notification_enable"
"""Webhooks on or off, for every project."""
DISABLED_AUDIT_LOG_EVENT_TYPES = "disabled_audit_log_event_types"
"""Comma-separated audit event types not written (``pull_artifact`` under heavy pull load)."""
AUDIT_LOG_FORWARD_ENDPOINT = "audit_log_forward_endpoint"
"""Syslog endpoint every audit event is also sent to (``[tcp://|udp://]host:port``); empty: off."""
SKIP_AUDIT_LOG_DATABASE = "skip_audit_log_database"
"""Forward audit events only, without storing them (needs a forward endpoint)."""
TOKEN_EXPIRATION = "token_expiration"  # noqa: S105 - a setting name, not a secret
"""Registry token lifetime in minutes (start value: ``token_expiration_minutes``)."""
SESSION_TIMEOUT = "session_timeout"
"""Console session idle lifetime in minutes (start value: ``session_timeout_minutes``)."""
ROBOT_NAME_PREFIX = "robot_name_prefix"
"""What new robot names start with (start value: the ``robot_name_prefix`` setting)."""
QUOTA_PER_PROJECT_ENABLE = "quota_per_project_enable"
"""Project storage limits enforced (usage is counted either way)."""
READ_ONLY = "read_only"
"""Harbor's read-only mode: every change refused, pulls served (``system.readonly``)."""

ROBOT_PREFIX_MAX = 32
_PREFIX_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-$~#")
_PREFIX_MARKERS = "$~#"
"""Characters no user name may hold (``iam.users``): a prefix with one of them can
never be the start of a user's name, so a login name is a robot's or a user's, never
both."""


def check_robot_prefix(prefix: str) -> str:
    """A robot name prefix set at run time: 1-32 of letters, digits and ``. _ - $ ~ #``,
    at least one of ``$ ~ #``. Basic credentials (``:``), project robots' ``+`` and
    white space would break reading ``<prefix><project>+<name>`` back."""
    if not prefix or len(prefix) > ROBOT_PREFIX_MAX:
        raise ValueError(f"robot_name_prefix must be 1 to {ROBOT_PREFIX_MAX} characters")
    if any(c not in _PREFIX_CHARACTERS for c in prefix):
        raise ValueError(
            "robot_name_prefix may only hold letters, digits and . _ - $ ~ # "
            "(no ':', '+', '/' or white space)"
        )
    if not any(c in _PREFIX_MARKERS for c in prefix):
        raise ValueError(
            "robot_name_prefix must contain $, ~ or # (characters user names cannot "
            "hold), so no user's name starts with it"
        )
    return prefix


AUTH_MODE = "auth_mode"
LDAP_URL = "ldap_url"
LDAP_SEARCH_DN = "ldap_search_dn"
LDAP_SEARCH_PASSWORD = "ldap_search_password"  # noqa: S105 - a setting name
LDAP_BASE_DN = "ldap_base_dn"
LDAP_FILTER = "ldap_filter"
LDAP_UID = "ldap_uid"
LDAP_SCOPE = "ldap_scope"
LDAP_TIMEOUT = "ldap_timeout"
LDAP_VERIFY_CERT = "ldap_verify_cert"
LDAP_STARTTLS = "ldap_starttls"
"""Dockyard's: upgrade an ``ldap://`` connection with StartTLS (Harbor has no such item)."""
LDAP_CA_CERT = "ldap_ca_cert"
"""Dockyard's: PEM certificates the directory's is checked against (else the system's)."""
LDAP_GROUP_BASE_DN = "ldap_group_base_dn"
LDAP_GROUP_SEARCH_FILTER = "ldap_group_search_filter"
LDAP_GROUP_ATTRIBUTE_NAME = "ldap_group_attribute_name"
LDAP_GROUP_SEARCH_SCOPE = "ldap_group_search_scope"
LDAP_GROUP_ADMIN_DN = "ldap_group_admin_dn"
LDAP_GROUP_MEMBERSHIP_ATTRIBUTE = "ldap_group_membership_attribute"
LDAP_KEYS = (
    LDAP_URL,
    LDAP_SEARCH_DN,
    LDAP_SEARCH_PASSWORD,
    LDAP_BASE_DN,
    LDAP_FILTER,
    LDAP_UID,
    LDAP_SCOPE,
    LDAP_TIMEOUT,
    LDAP_VERIFY_CERT,
    LDAP_STARTTLS,
    LDAP_CA_CERT,
    LDAP_GROUP_BASE_DN,
    LDAP_GROUP_SEARCH_FILTER,
    LDAP_GROUP_ATTRIBUTE_NAME,
    LDAP_GROUP_SEARCH_SCOPE,
    LDAP_GROUP_ADMIN_DN,
    LDAP_GROUP_MEMBERSHIP_ATTRIBUTE,
)
"""The items LDAP sign-in reads (``iam.providers.ldap``)."""
MAX_LDAP_CA_CERT = 65536


def check_ldap_url(url: str) -> str:
    """``ldap://host[:port]`` or ``ldaps://host[:port]`` (a bare host means ``ldap://``)."""
    if not url:
        return url
    rest = url.split("://", 1)[1] if "://" in url else url
    scheme = url.split("://", 1)[0].lower() if "://" in url else "ldap"
    if scheme not in ("ldap", "ldaps"):
        raise ValueError("ldap_url must start with ldap:// or ldaps://")
    host, _, port = rest.rstrip("/").rpartition(":") if ":" in rest else (rest, "", "")
    if not host or "/" in host or " " in host or (port and not port.isdigit()):
        raise ValueError("ldap_url must be ldap://host[:port] or ldaps://host[:port]")
    return url


def _filter_check(key: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        """Empty, or one parenthesised LDAP filter such as ``(objectClass=person)``."""
        if value and not (value.startswith("(") and value.endswith(")")):
            raise ValueError(f"{key} must be empty or an LDAP filter in parentheses")
        if value.count("(") != value.count(")"):
            raise ValueError(f"{key} has unbalanced parentheses")
        if value:
            try:  # the LDAP client's own parser: what it refuses here, it would refuse mid-sign-in
                parse_filter(value, None, True, True, None, False)
            except (LDAPException, ValueError, IndexError) as exc:
                raise ValueError(f"{key} is not an LDAP filter ({exc})") from None
        return value

    return check


check_ldap_filter = _filter_check(LDAP_FILTER)


def _is_attribute(value: str) -> bool:
    return bool(value) and value[0].isalpha() and all(c.isalnum() or c == "-" for c in value)


def _attribute_check(key: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        """An attribute name (``uid``, ``cn``, ``mail``…): it is put into a search filter."""
        if not _is_attribute(value):
            raise ValueError(f"{key} must be an attribute name (letters, digits and -)")
        return value

    return check


check_ldap_attribute = _attribute_check(LDAP_UID)


def check_membership_attributes(value: str) -> str:
    """One to three attribute names, comma-separated: ``memberOf`` (read on the user's
    entry) and/or ``member``/``uniqueMember`` (searched on the group entries)."""
    names = [n.strip() for n in value.split(",")]
    if not 1 <= len(names) <= 3 or not all(_is_attribute(n) for n in names):
        raise ValueError(
            f"{LDAP_GROUP_MEMBERSHIP_ATTRIBUTE} must name 1 to 3 attributes, comma-separated "
            "(memberOf, member, uniqueMember)"
        )
    return value


def check_ldap_dn(key: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        """Empty, or something shaped like a DN (``attribute=value[,…]``)."""
        if value and ("=" not in value or len(value) > 512):
            raise ValueError(f"{key} must be empty or a DN such as ou=groups,dc=example,dc=org")
        return value

    return check


def check_ca_bundle(value: str) -> str:
    """Empty, or PEM certificates that Python's TLS can load."""
    if not value.strip():
        return value
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError(f"{LDAP_CA_CERT} must be PEM certificates (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError):
        raise ValueError(f"{LDAP_CA_CERT} holds no certificate that can be loaded") from None
    return value


AUTHPROXY_ENDPOINT = "http_authproxy_endpoint"
AUTHPROXY_TOKENREVIEW_ENDPOINT = "http_authproxy_tokenreview_endpoint"
AUTHPROXY_VERIFY_CERT = "http_authproxy_verify_cert"
AUTHPROXY_SKIP_SEARCH = "http_authproxy_skip_search"
AUTHPROXY_SERVER_CERTIFICATE = "http_authproxy_server_certificate"
AUTHPROXY_ADMIN_GROUPS = "http_authproxy_admin_groups"
AUTHPROXY_ADMIN_USERNAMES = "http_authproxy_admin_usernames"
AUTHPROXY_KEYS = (
    AUTHPROXY_ENDPOINT,
    AUTHPROXY_TOKENREVIEW_ENDPOINT,
    AUTHPROXY_VERIFY_CERT,
    AUTHPROXY_SKIP_SEARCH,
    AUTHPROXY_SERVER_CERTIFICATE,
    AUTHPROXY_ADMIN_GROUPS,
    AUTHPROXY_ADMIN_USERNAMES,
)
"""The items HTTP auth proxy sign-in reads (``iam.providers.authproxy``)."""
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def check_authproxy_url(url: str) -> str:
    """Empty, or an absolute ``http(s)://host[:port]/path`` URL without credentials."""
    if not url:
        return url
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.username is not None
        or any(c.isspace() for c in url)
    ):
        raise ValueError(
            "the auth proxy's endpoints must be http:// or https:// URLs such as "
            "https://auth.example.com/login (no spaces, no user:password@)"
        )
    return url


def check_pem_certificates(value: str) -> str:
    """Empty, or PEM certificates (the CA that signed the auth proxy's certificate)."""
    if not value.strip():
        return value
    if _PEM_BEGIN not in value:
        raise ValueError(
            f"http_authproxy_server_certificate must be PEM certificates ({_PEM_BEGIN} …), or empty"
        )
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"http_authproxy_server_certificate cannot be read as PEM certificates: {exc}"
        ) from None
    return value


def name_list(value: str) -> list[str]:
    """A comma-separated list of names (admin groups, admin usernames), blanks dropped."""
    return [name.strip() for name in value.split(",") if name.strip()]


def check_name_list(value: str) -> str:
    """Comma-separated names, each at most 255 characters."""
    if any(len(name) > 255 for name in name_list(value)):
        raise ValueError("each name in the list must be at most 255 characters")
    return value


# As in Harbor: with ``oidc_auth`` the console's sign-in page goes straight to the
# provider (``?local=1`` keeps the password form for ``admin``). Stored in any mode, as
# Harbor stores it, and without effect outside ``oidc_auth`` (``/systeminfo`` says so).
PRIMARY_AUTH_MODE = "primary_auth_mode"
OIDC_NAME = "oidc_name"
OIDC_ENDPOINT = "oidc_endpoint"
OIDC_CLIENT_ID = "oidc_client_id"
OIDC_CLIENT_SECRET = "oidc_client_secret"  # noqa: S105 - a setting name
OIDC_SCOPE = "oidc_scope"
OIDC_USER_CLAIM = "oidc_user_claim"
OIDC_GROUPS_CLAIM = "oidc_groups_claim"
OIDC_ADMIN_GROUP = "oidc_admin_group"
OIDC_GROUP_FILTER = "oidc_group_filter"
OIDC_VERIFY_CERT = "oidc_verify_cert"
OIDC_AUTO_ONBOARD = "oidc_auto_onboard"
OIDC_EXTRA_REDIRECT_PARMS = "oidc_extra_redirect_parms"
OIDC_LOGOUT = "oidc_logout"
OIDC_KEYS = (
    OIDC_NAME,
    OIDC_ENDPOINT,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    OIDC_SCOPE,
    OIDC_USER_CLAIM,
    OIDC_GROUPS_CLAIM,
    OIDC_ADMIN_GROUP,
    OIDC_GROUP_FILTER,
    OIDC_VERIFY_CERT,
    OIDC_AUTO_ONBOARD,
    OIDC_EXTRA_REDIRECT_PARMS,
    OIDC_LOGOUT,
)
"""The items OIDC sign-in reads (``iam.providers.oidc``)."""
OIDC_RESERVED_PARAMETERS = frozenset(
    {
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)
"""Authorization request parameters ``oidc_extra_redirect_parms`` may not set."""


def check_oidc_endpoint(url: str) -> str:
    """The issuer URL: ``https://…`` (``http://`` only on loopback, for a provider on the
    same machine), no query or fragment; discovery is at ``/.well-known/openid-configuration``."""
    if not url:
        return url
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "::1") or (
        parts.hostname is not None and parts.hostname.startswith("127.")
    )
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError("oidc_endpoint must be an https:// URL (http:// only on loopback)")
    if not parts.hostname or parts.query or parts.fragment or " " in url:
        raise ValueError("oidc_endpoint must be the issuer's URL, with no query or fragment")
    return url


def check_oidc_scope(value: str) -> str:
    """Comma-separated scopes (Harbor's form) that include ``openid``."""
    scopes = [s.strip() for s in value.split(",")]
    if "openid" not in scopes or any(not s or not s.isprintable() or " " in s for s in scopes):
        raise ValueError("oidc_scope must be comma-separated scopes that include openid")
    return value


def check_oidc_group_filter(value: str) -> str:
    """A regular expression a group name must match (searched, as Harbor does)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"oidc_group_filter is not a regular expression: {exc}") from None
    return value


def check_oidc_extra_parameters(value: str) -> str:
    """A JSON object of string values added to the authorization request
    (``{"prompt": "login"}``); the flow's own parameters cannot be replaced."""
    if not value.strip():
        return value
    try:
        found = json.loads(value)
    except ValueError:
        raise ValueError("oidc_extra_redirect_parms must be a JSON object") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError("oidc_extra_redirect_parms must be a JSON object of string values")
    reserved = sorted(OIDC_RESERVED_PARAMETERS & set(found))
    if reserved:
        raise ValueError(
            f"oidc_extra_redirect_parms cannot set {', '.join(reserved)}: the sign-in sets them"
        )
    return value


_UAA = "UAA authentication"


def _unsupported(
    key: str, kind: type[bool] | type[int] | type[str], default: ConfigValue, feature: str
) -> ConfigItem:
    return ConfigItem(
        key,
        kind,
        default,
        editable=True,
        missing=feature,
        secret=key.endswith(("_password", "_secret")),
        max_length=65536,
    )


_UNSUPPORTED: tuple[ConfigItem, ...] = (
    # Groups are resolved once per sign-in by one walk (iam.providers.ldap); Harbor's
    # switch to attach them in parallel has nothing to switch.
    _unsupported("ldap_group_attach_parallel", bool, False, "attaching LDAP groups in parallel"),
    *(
        _unsupported(key, str, "", _UAA)
        for key in ("uaa_client_id", "uaa_client_secret", "uaa_endpoint")
    ),
    _unsupported("uaa_verify_cert", bool, True, _UAA),
    _unsupported("scanner_skip_update_pulltime", bool, False, "vulnerability scanning"),
)

ITEMS: dict[str, ConfigItem] = {
    item.key: item
    for item in (
        ConfigItem(
            "auth_mode",
            str,
            "db_auth",
            editable=True,
            choices=("db_auth", "ldap_auth", "oidc_auth", "uaa_auth", "http_auth"),
            missing_choices={"uaa_auth": _UAA},
        ),
        ConfigItem(AUTHPROXY_ENDPOINT, str, "", editable=True, check=check_authproxy_url),
        ConfigItem(
            AUTHPROXY_TOKENREVIEW_ENDPOINT, str, "", editable=True, check=check_authproxy_url
        ),
        ConfigItem(AUTHPROXY_VERIFY_CERT, bool, True, editable=True),
        ConfigItem(AUTHPROXY_SKIP_SEARCH, bool, False, editable=True),
        ConfigItem(
            AUTHPROXY_SERVER_CERTIFICATE,
            str,
            "",
            editable=True,
            max_length=65536,
            check=check_pem_certificates,
        ),
        ConfigItem(
            AUTHPROXY_ADMIN_GROUPS, str, "", editable=True, max_length=8192, check=check_name_list
        ),
        ConfigItem(
            AUTHPROXY_ADMIN_USERNAMES,
            str,
            "",
            editable=True,
            max_length=8192,
            check=check_name_list,
        ),
        ConfigItem(LDAP_URL, str, "", editable=True, check=check_ldap_url),
        ConfigItem(LDAP_SEARCH_DN, str, "", editable=True),
        ConfigItem(LDAP_SEARCH_PASSWORD, str, "", editable=True, secret=True),
        ConfigItem(LDAP_BASE_DN, str, "", editable=True),
        ConfigItem(LDAP_FILTER, str, "", editable=True, check=check_ldap_filter),
        ConfigItem(LDAP_UID, str, "cn", editable=True, max_length=64, check=check_ldap_attribute),
        ConfigItem(LDAP_SCOPE, int, 2, editable=True, minimum=0, maximum=2),
        ConfigItem(LDAP_TIMEOUT, int, 5, editable=True, minimum=1, maximum=300),
        ConfigItem(LDAP_VERIFY_CERT, bool, True, editable=True),
        ConfigItem(PRIMARY_AUTH_MODE, bool, False, editable=True),
        ConfigItem(OIDC_NAME, str, "", editable=True, max_length=64),
        ConfigItem(OIDC_ENDPOINT, str, "", editable=True, check=check_oidc_endpoint),
        ConfigItem(OIDC_CLIENT_ID, str, "", editable=True, max_length=512),
        ConfigItem(OIDC_CLIENT_SECRET, str, "", editable=True, secret=True),
        ConfigItem(OIDC_SCOPE, str, "openid,profile,email", editable=True, check=check_oidc_scope),
        ConfigItem(OIDC_USER_CLAIM, str, "", editable=True, max_length=255),
        ConfigItem(OIDC_GROUPS_CLAIM, str, "", editable=True, max_length=255),
        ConfigItem(OIDC_ADMIN_GROUP, str, "", editable=True, max_length=255),
        ConfigItem(OIDC_GROUP_FILTER, str, "", editable=True, check=check_oidc_group_filter),
        ConfigItem(OIDC_VERIFY_CERT, bool, True, editable=True),
        ConfigItem(OIDC_AUTO_ONBOARD, bool, False, editable=True),
        ConfigItem(
            OIDC_EXTRA_REDIRECT_PARMS, str, "", editable=True, check=check_oidc_extra_parameters
        ),
        ConfigItem(OIDC_LOGOUT, bool, False, editable=True),
        ConfigItem(LDAP_STARTTLS, bool, False, editable=True, harbor=False),
        ConfigItem(
            LDAP_CA_CERT,
            str,
            "",
            editable=True,
            max_length=MAX_LDAP_CA_CERT,
            check=check_ca_bundle,
            harbor=False,
        ),
        ConfigItem(
            LDAP_GROUP_BASE_DN, str, "", editable=True, check=check_ldap_dn(LDAP_GROUP_BASE_DN)
        ),
        ConfigItem(
            LDAP_GROUP_SEARCH_FILTER,
            str,
            "",
            editable=True,
            check=_filter_check(LDAP_GROUP_SEARCH_FILTER),
        ),
        ConfigItem(
            LDAP_GROUP_ATTRIBUTE_NAME,
            str,
            "cn",
            editable=True,
            max_length=64,
            check=_attribute_check(LDAP_GROUP_ATTRIBUTE_NAME),
        ),
        ConfigItem(LDAP_GROUP_SEARCH_SCOPE, int, 2, editable=True, minimum=0, maximum=2),
        ConfigItem(
            LDAP_GROUP_ADMIN_DN, str, "", editable=True, check=check_ldap_dn(LDAP_GROUP_ADMIN_DN)
        ),
        ConfigItem(
            LDAP_GROUP_MEMBERSHIP_ATTRIBUTE,
            str,
            "memberof",
            editable=True,
            max_length=200,
            check=check_membership_attributes,
        ),
        ConfigItem(SELF_REGISTRATION, bool, False, editable=True),
        ConfigItem(
            PROJECT_CREATION_RESTRICTION,
            str,
            "everyone",
            editable=True,
            choices=("everyone", "adminonly"),
        ),
        ConfigItem(ROBOT_TOKEN_DURATION, int, 30, editable=True, minimum=1, maximum=36500),
        ConfigItem(BANNER_MESSAGE, str, "", editable=True, max_length=4096),
        ConfigItem(STORAGE_PER_PROJECT, int, -1, editable=True, minimum=-1, maximum=2**63 - 1),
        ConfigItem(
            ROBOT_NAME_PREFIX,
            str,
            "robot$",
            editable=True,
            max_length=ROBOT_PREFIX_MAX,
            from_settings=lambda s: s.robot_name_prefix,
            check=check_robot_prefix,
        ),
        ConfigItem(
            TOKEN_EXPIRATION,
            int,
            30,
            editable=True,
            minimum=1,
            maximum=60 * 24,
            from_settings=lambda s: s.token_expiration_minutes,
        ),
        ConfigItem(
            SESSION_TIMEOUT,
            int,
            60,
            editable=True,
            minimum=1,
            maximum=60 * 24 * 30,
            from_settings=lambda s: s.session_timeout_minutes,
        ),
        ConfigItem(QUOTA_PER_PROJECT_ENABLE, bool, True, editable=True),
        ConfigItem(NOTIFICATION_ENABLE, bool, True, editable=True),
        ConfigItem(DISABLED_AUDIT_LOG_EVENT_TYPES, str, "", editable=True, max_length=4096),
        ConfigItem(
            AUDIT_LOG_FORWARD_ENDPOINT,
            str,
            "",
            editable=True,
            max_length=syslog.MAX_ENDPOINT,
            check=syslog.parse_endpoint,
        ),
        ConfigItem(SKIP_AUDIT_LOG_DATABASE, bool, False, editable=True),
        ConfigItem(READ_ONLY, bool, False, editable=True),
        *_UNSUPPORTED,
    )
}


async def get_property(session: AsyncSession, key: str) -> str | None:
    prop = await session.get(Property, key)
    return prop.v if prop is not None else None


async def set_property(session: AsyncSession, key: str, value: str) -> None:
    """Insert or overwrite one system property (two writers racing both succeed)."""
    stmt = dialect_insert(session, Property).values(k=key, v=value)
    await session.execute(stmt.on_conflict_do_update(index_elements=["k"], set_={"v": value}))
    sync = session.sync_session
    if not sync.info.get(_CHANGE_HOOKED):
        sync.info[_CHANGE_HOOKED] = True
        event.listen(sync, "after_commit", _properties_committed, once=True)


RUN_TIME_FRESH_SECONDS = 2.0
"""How stale ``cached_run_time_value`` may get for a change made on another node (the
read-only flag's and the audit items' rule); a change this process commits is seen at once."""
_CHANGE_HOOKED = "dockyard.properties_hooked"
# Per write engine (two apps in one process keep theirs apart): how many property
# changes this process committed, and per key when it was read, the count then and
# what the database said.
_changes: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()
_seen: WeakKeyDictionary[Engine, dict[str, tuple[float, int, str | None]]] = WeakKeyDictionary()


def _properties_committed(session: Session) -> None:
    session.info.pop(_CHANGE_HOOKED, None)
    engine = session.get_bind()
    if isinstance(engine, Engine):
        _changes[engine] = _changes.get(engine, 0) + 1


async def cached_run_time_value(
    conn: AsyncConnection, write_engine: Engine, key: str
) -> ConfigValue | None:
    """``run_time_value`` of an item read on every request (the token lifetime), read
    from the database at most every ``RUN_TIME_FRESH_SECONDS``. ``write_engine`` is the
    one changes are committed through: a change committed by this process through it is
    seen at once."""
    changes = _changes.get(write_engine, 0)
    seen = _seen.setdefault(write_engine, {})
    now = time.monotonic()
    found = seen.get(key)
    if found is None or found[1] != changes or now - found[0] >= RUN_TIME_FRESH_SECONDS:
        stored = await conn.scalar(select(Property.v).where(Property.k == key))
        found = (now, changes, None if stored is None else str(stored))
        seen[key] = found  # changes as counted before the read
    return None if found[2] is None else ITEMS[key].decode(found[2])


async def value(session: AsyncSession, key: str) -> ConfigValue:
    """The current value of an editable item (its default until an admin sets it)."""
    item = ITEMS[key]
    stored = await get_property(session, key)
    return item.default if stored is None else item.decode(stored)


async def run_time_value(session: AsyncSession, key: str) -> ConfigValue | None:
    """What an administrator set an item to at run time, or None (the start-time setting holds)."""
    stored = await get_property(session, key)
    return None if stored is None else ITEMS[key].decode(stored)


async def current(
    session: AsyncSession, settings: Settings, *, own: bool = False
) -> dict[str, tuple[ConfigValue, bool]]:
    """Every item as (value, editable), for ``getConfigurations``; with ``own``, Dockyard's
    items that Harbor's schema lacks too (``getInternalconfig``, a free-form map)."""
    result: dict[str, tuple[ConfigValue, bool]] = {}
    for key, item in ITEMS.items():
        if item.secret or not (item.harbor or own):
            continue
        if item.missing:
            result[key] = (item.default, False)
        elif item.from_settings is not None:
            changed = await run_time_value(session, key) if item.editable else None
            fallback = item.from_settings(settings)
            result[key] = (fallback if changed is None else changed, item.editable)
        elif item.editable:
            result[key] = (await value(session, key), True)
        else:
            result[key] = (item.default, False)
    return result


async def update(session: AsyncSession, changes: Mapping[str, Any]) -> dict[str, ConfigValue]:
    """Apply ``changes`` all or nothing; unknown or read-only keys are refused by name."""
    parsed: dict[str, ConfigValue] = {}
    for key, raw in changes.items():
        item = ITEMS.get(key)
        if item is None and key in Settings.model_fields:
            raise BadRequestError(
                f"{key} is a start-time setting, not a configuration item: set it in "
                f"dockyard.yml (or DOCKYARD_{key.upper()}) and restart"
            )
        if item is None:
            raise BadRequestError(
                f"{key} is not a configuration item Dockyard has; "
                f"editable items: {', '.join(k for k, i in ITEMS.items() if i.editable)}"
            )
        if not item.editable:
            raise BadRequestError(f"{key} cannot be changed")
        parsed[key] = item.parse(raw)
        if item.missing:
            del parsed[key]  # an off value of a missing feature: accepted, nothing to store
    if AUDIT_LOG_FORWARD_ENDPOINT in parsed or SKIP_AUDIT_LOG_DATABASE in parsed:
        await _check_audit_forwarding(session, parsed)
    if AUTH_MODE in parsed:
        await _check_auth_mode_change(session, str(parsed[AUTH_MODE]))
    for key, new in parsed.items():
        stored = ITEMS[key].encode(new)
        if ITEMS[key].secret:
            stored = await secretbox.seal(session, stored)
        await set_property(session, key, stored)
    return parsed


async def users_besides_admin(session: AsyncSession) -> int:
    """Users other than ``admin`` (not deleted): while there are any, ``auth_mode`` stays."""
    count = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.username != "admin", User.deleted.is_(False))
    )
    return int(count or 0)


async def _check_auth_mode_change(session: AsyncSession, mode: str) -> None:
    """As in Harbor, the authentication mode changes only while ``admin`` is the only user:
    a user made by one mode would otherwise be signed in by another."""
    if mode == await value(session, AUTH_MODE):
        return
    others = await users_besides_admin(session)
    if others:
        raise BadRequestError(
            f"auth_mode cannot be changed to {mode}: it can change only while admin is the "
            f"only user, and {others} other user(s) exist"
        )


async def secret_value(session: AsyncSession, key: str) -> str:
    """A secret item's current value, decrypted ("" when unset)."""
    return await secretbox.open_sealed(session, await get_property(session, key) or "")


async def _check_audit_forwarding(session: AsyncSession, parsed: Mapping[str, ConfigValue]) -> None:
    """Audit events may skip the database only while they are forwarded (as Harbor)."""
    skip = parsed.get(SKIP_AUDIT_LOG_DATABASE)
    if skip is None:
        skip = await value(session, SKIP_AUDIT_LOG_DATABASE)
    endpoint = parsed.get(AUDIT_LOG_FORWARD_ENDPOINT)
    if endpoint is None:
        endpoint = await value(session, AUDIT_LOG_FORWARD_ENDPOINT)
    if skip and not str(endpoint).strip():
        raise BadRequestError(
            f"{SKIP_AUDIT_LOG_DATABASE} needs an {AUDIT_LOG_FORWARD_ENDPOINT}: "
            "audit events would be neither stored nor forwarded"
        )
