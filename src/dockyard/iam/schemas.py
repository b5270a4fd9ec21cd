"""Harbor's user, user-group and permission shapes, named and spelt as its swagger does.

Request models ignore fields they do not know (as Harbor does) and take JSON
types strictly: a string where a boolean belongs is a 400, not a guess.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class UserCreationReq(_Request):
    username: str | None = None
    email: str | None = None
    realname: str | None = None
    comment: str | None = None
    password: str | None = None


class UserProfile(_Request):
    email: str | None = None
    realname: str | None = None
    comment: str | None = None


class PasswordReq(_Request):
    old_password: str | None = None
    new_password: str | None = None


class UserSysAdminFlag(_Request):
    sysadmin_flag: bool | None = None


class OIDCCliSecretReq(_Request):
    secret: str | None = None


class UserGroup(_Request):
    """Both the request and the answer of the user-group operations."""

    id: int | None = None
    group_name: str | None = None
    group_type: int | None = None
    ldap_group_dn: str | None = None


class OIDCUserInfo(BaseModel):
    id: int
    user_id: int
    subiss: str
    secret: str | None = None
    """Shown to the user themselves only."""
    creation_time: datetime
    update_time: datetime


class UserResp(BaseModel):
    user_id: int
    username: str
    email: str | None = None
    realname: str | None = None
    comment: str | None = None
    sysadmin_flag: bool
    admin_role_in_auth: bool = False
    """True when the sign-in provider (LDAP's admin group, OIDC's admin group, the HTTP auth
    proxy's admin groups or usernames) made the user an administrator at their last sign-in."""
    oidc_user_meta: OIDCUserInfo | None = None
    creation_time: datetime
    update_time: datetime


class UserSearchRespItem(BaseModel):
    user_id: int
    username: str


class UserGroupSearchItem(BaseModel):
    id: int
    group_name: str
    group_type: int


class Permission(BaseModel):
    resource: str
    action: str
