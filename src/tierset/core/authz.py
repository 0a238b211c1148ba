"""Who may do what: roles, the permissions they grant, and the pure policy checks.

Every service asks this module before it returns or writes anything of an
account; the services find which account owns a scope (the store knows) and
pass it in, so this module holds only the policy and imports neither the store
nor grpc. The rules:

* ``VIEWER`` may view settings (and the account and retailers) of its account.
* ``ADMIN`` may also edit settings, register retailers and manage integration
  settings of its account, and sees the values of secret keys (a VIEWER gets them
  masked; services/keydefs.py).
* ``PLATFORM`` may do all of that on any account, write GLOBAL settings and
  create accounts.

A scope outside the caller's account answers PERMISSION_DENIED whether or not
it exists: permission is checked before existence, so a caller cannot probe
other accounts' ids. Only callers who may act on any account (PLATFORM) ever
see NOT_FOUND for an account or retailer.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from enum import StrEnum

from tierset.core import errors
from tierset.core.reasons import Reason


class Role(StrEnum):
    """What a user is; a user holds one or more roles."""

    ADMIN = "ADMIN"
    VIEWER = "VIEWER"
    PLATFORM = "PLATFORM"


class Permission(StrEnum):
    """What a role allows."""

    SETTINGS_VIEW = "SETTINGS_VIEW"
    SETTINGS_EDIT = "SETTINGS_EDIT"
    RETAILERS_MANAGE = "RETAILERS_MANAGE"
    # Integration settings carry secrets (API keys), so reading them is management too.
    INTEGRATIONS_MANAGE = "INTEGRATIONS_MANAGE"
    # The values of secret keys (key definitions): VIEWERs get them masked.
    SECRETS_VIEW = "SECRETS_VIEW"
    # GLOBAL settings, creating accounts, and acting on any account.
    PLATFORM = "PLATFORM"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.SETTINGS_VIEW}),
    Role.ADMIN: frozenset(
        {
            Permission.SETTINGS_VIEW,
            Permission.SETTINGS_EDIT,
            Permission.RETAILERS_MANAGE,
            Permission.INTEGRATIONS_MANAGE,
            Permission.SECRETS_VIEW,
        }
    ),
    Role.PLATFORM: frozenset(Permission),
}

_PERMISSIONS_OF_ROLES: dict[frozenset[Role], frozenset[Permission]] = {}


def _permissions_of(roles: frozenset[Role]) -> frozenset[Permission]:
    """Everything `roles` allow; one entry per combination of roles, so the memo is
    bounded by the Role enum."""
    found = _PERMISSIONS_OF_ROLES.get(roles)
    if found is None:
        found = frozenset().union(*(ROLE_PERMISSIONS[role] for role in roles))
        _PERMISSIONS_OF_ROLES[roles] = found
    return found


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user of one account, with roles."""

    user_id: int
    username: str
    account_id: int
    roles: frozenset[Role]
    # How the caller proved who it is: ACCESS_TOKEN, API_TOKEN or APP_PASSWORD.
    credential_kind: str
    credential_id: int
    # Everything the caller's roles allow, and whether it may act on accounts other than
    # its own: worked out once, when the principal is made (a cached credential's principal
    # serves many calls, and each call asks several times).
    permissions: frozenset[Permission] = field(init=False, repr=False, compare=False)
    acts_on_any_account: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        permissions = _permissions_of(self.roles)
        object.__setattr__(self, "permissions", permissions)
        object.__setattr__(self, "acts_on_any_account", Permission.PLATFORM in permissions)


# The name the admin commands act under, in logs and errors. A username cannot hold a
# space (credentials.check_username), so no user can ever be mistaken for it.
OPERATOR_NAME = "local operator"
OPERATOR_CREDENTIAL = "OPERATOR"


def operator() -> Principal:
    """The person at the admin CLI: may do what PLATFORM may, on any account.

    Whoever can run the admin commands can reach the database already; the point
    of a principal is that the CLI goes through the same services, and so the same
    validation and checks, as a PLATFORM caller over gRPC.
    """
    return Principal(
        user_id=0,
        username=OPERATOR_NAME,
        account_id=0,
        roles=frozenset({Role.PLATFORM}),
        credential_kind=OPERATOR_CREDENTIAL,
        credential_id=0,
    )


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("tierset_principal")


def current_principal() -> Principal:
    """The caller of the RPC being handled (set by the call pipeline)."""
    try:
        return _current.get()
    except LookupError:
        # Fail closed: a handler asking for a caller on an anonymous path is a bug.
        raise errors.TiersetError(
            errors.Code.UNAUTHENTICATED, Reason.CREDENTIALS_MISSING, "authentication required"
        ) from None


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    """Makes `principal` the caller for the rest of this task; the call pipeline's job."""
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal]) -> None:
    """Forgets the caller set by :func:`set_current_principal`."""
    _current.reset(token)


def denied(permission: Permission) -> errors.TiersetError:
    """PERMISSION_DENIED naming the permission that was missing (never whose data it is)."""
    where = "" if permission is Permission.PLATFORM else " on the account that owns it"
    return errors.TiersetError(
        errors.Code.PERMISSION_DENIED,
        Reason.PERMISSION_DENIED,
        f"permission denied: this needs {permission}{where}",
        metadata={"permission": permission.value},
    )


def require(principal: Principal, permission: Permission, account_id: int | None) -> None:
    """Raises PERMISSION_DENIED unless `principal` holds `permission` on `account_id`.

    `account_id` None means the thing asked for does not exist: only a caller
    who may act on any account passes (and then learns it does not exist).
    """
    if permission not in principal.permissions:
        raise denied(permission)
    if principal.acts_on_any_account:
        return
    if account_id is None or account_id != principal.account_id:
        raise denied(permission)


def require_platform(principal: Principal) -> None:
    """Raises PERMISSION_DENIED unless the caller has the PLATFORM permission."""
    if Permission.PLATFORM not in principal.permissions:
        raise denied(Permission.PLATFORM)
