"""The one settings object: read once from the environment (and an optional .env), passed in."""

from __future__ import annotations

import re
from datetime import time, timedelta
from types import SimpleNamespace
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botframework.connector.auth import AuthenticationConstants as Endpoints
from botframework.connector.auth import CallerIdConstants
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.retention import RetentionPolicy

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///ourcambridge.db"


class Settings(BaseSettings):
    """Configuration of one bot process. Every variable is documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    microsoft_app_id: str = Field(default="", validation_alias=AliasChoices("MicrosoftAppId"))
    microsoft_app_password: str = Field(
        default="", validation_alias=AliasChoices("MicrosoftAppPassword"), repr=False
    )
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = Field(
        default="SingleTenant", validation_alias=AliasChoices("MicrosoftAppType")
    )
    microsoft_app_tenant_id: str = Field(
        default="", validation_alias=AliasChoices("MicrosoftAppTenantId")
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL")
    )
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST"))
    port: int = Field(default=3978, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    admin_aad_ids: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), validation_alias=AliasChoices("ADMIN_AAD_IDS")
    )
    allowed_tenant_ids: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), validation_alias=AliasChoices("ALLOWED_TENANT_IDS")
    )
    timezone: str = Field(default="Europe/London", validation_alias=AliasChoices("TIMEZONE"))
    openid_metadata_url: str = Field(
        default="", validation_alias=AliasChoices("BOT_OPENID_METADATA_URL")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    mir_contact: str = Field(
        default="the Our Cambridge transformation team",
        validation_alias=AliasChoices("MIR_CONTACT"),
    )
    # Local time of the morning reminder run, or "off" (then run `ourcambridge reminders run`
    # from an external scheduler instead).
    reminders_at: str = Field(default="08:00", validation_alias=AliasChoices("REMINDERS_AT"))
    # Every replica runs the schedules (weekly digests, morning reminders, the ideas
    # call-out, the retention purge); turn them off to drive them from outside with
    # `ourcambridge digest send`, `ourcambridge reminders run` and `ourcambridge privacy purge`.
    scheduler_enabled: bool = Field(
        default=True, validation_alias=AliasChoices("SCHEDULER_ENABLED")
    )
    # The outbox worker (bot/proactive.py DeliveryPolicy holds the defaults and why).
    outbox_concurrency: int = Field(
        default=16, ge=1, le=100, validation_alias=AliasChoices("OUTBOX_CONCURRENCY")
    )
    outbox_lease_seconds: float = Field(
        default=900, gt=0, validation_alias=AliasChoices("OUTBOX_LEASE_SECONDS")
    )
    outbox_send_timeout_seconds: float = Field(
        default=30, gt=0, validation_alias=AliasChoices("OUTBOX_SEND_TIMEOUT_SECONDS")
    )
    outbox_first_backoff_seconds: float = Field(
        default=30, gt=0, validation_alias=AliasChoices("OUTBOX_FIRST_BACKOFF_SECONDS")
    )
    # Requests a second to the Bot Connector for the whole bot, all replicas together. Teams
    # allows 50 per app per tenant; set it lower if other apps of yours share that budget.
    outbox_max_per_second: int = Field(
        default=50, ge=1, le=50, validation_alias=AliasChoices("OUTBOX_MAX_PER_SECOND")
    )
    allow_unauthenticated_network: bool = Field(
        default=False, validation_alias=AliasChoices("ALLOW_UNAUTHENTICATED_NETWORK")
    )
    # "text" for people reading a terminal, "json" (one object a line) for a log service.
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=AliasChoices("LOG_FORMAT")
    )

    # --- Retention (storage/retention.py; docs/privacy.md gives the reason for each) ---
    # Local time (TIMEZONE) of the daily purge, or "off" (then run `ourcambridge privacy
    # purge` from an external scheduler instead).
    retention_purge_at: str = Field(
        default="03:30", validation_alias=AliasChoices("RETENTION_PURGE_AT")
    )
    # Sent and failed outbox messages. At least 8 days: the weekly jobs' dedupe keys must
    # outlive their week, or a job run again could send the same message twice.
    retention_outbox_days: int = Field(
        default=30, ge=8, validation_alias=AliasChoices("RETENTION_OUTBOX_DAYS")
    )
    # Dialog state (a form in progress) not touched for this long.
    retention_dialog_state_days: int = Field(
        default=30, ge=1, validation_alias=AliasChoices("RETENTION_DIALOG_STATE_DAYS")
    )
    # A Making It Real session's feedback notes, and its finished actions' owners and
    # reasons, this long after the session's date.
    retention_session_notes_months: int = Field(
        default=24, ge=1, validation_alias=AliasChoices("RETENTION_SESSION_NOTES_MONTHS")
    )
    # A closed idea's link to its submitter and supporters, this long after it closed.
    retention_idea_people_years: int = Field(
        default=2, ge=1, validation_alias=AliasChoices("RETENTION_IDEA_PEOPLE_YEARS")
    )
    # Staff (people the roster does not list) not seen for this long: their 1:1 chat
    # references, and their row when nothing else refers to it.
    retention_idle_staff_days: int = Field(
        default=365, ge=30, validation_alias=AliasChoices("RETENTION_IDLE_STAFF_DAYS")
    )
    retention_audit_years: int = Field(
        default=6, ge=1, validation_alias=AliasChoices("RETENTION_AUDIT_YEARS")
    )

    # --- The Teams app package (`ourcambridge manifest build`) ---
    # The Teams app's id in the manifest and the org catalogue; empty means MicrosoftAppId.
    teams_app_id: str = Field(default="", validation_alias=AliasChoices("TEAMS_APP_ID"))
    # The package's version; raise it for every upload of a changed package.
    teams_app_version: str = Field(
        default="1.0.0", validation_alias=AliasChoices("TEAMS_APP_VERSION")
    )
    # The bot's public host name (e.g. ourcambridge.azurewebsites.net), for validDomains.
    bot_domain: str = Field(default="", validation_alias=AliasChoices("BOT_DOMAIN"))
    developer_name: str = Field(
        default="Cambridge City Council", validation_alias=AliasChoices("DEVELOPER_NAME")
    )
    developer_website_url: str = Field(
        default="https://www.cambridge.gov.uk/",
        validation_alias=AliasChoices("DEVELOPER_WEBSITE_URL"),
    )
    developer_privacy_url: str = Field(
        default="https://www.cambridge.gov.uk/privacy-notice",
        validation_alias=AliasChoices("DEVELOPER_PRIVACY_URL"),
    )
    developer_terms_url: str = Field(
        default="https://www.cambridge.gov.uk/terms-of-use",
        validation_alias=AliasChoices("DEVELOPER_TERMS_URL"),
    )

    # --- Microsoft Graph (bot/graph.py), with the bot's own identity ---
    # Off until the council has granted the permissions docs/deploy.md lists.
    graph_enabled: bool = Field(default=False, validation_alias=AliasChoices("GRAPH_ENABLED"))
    graph_url: str = Field(
        default="https://graph.microsoft.com/v1.0", validation_alias=AliasChoices("GRAPH_URL")
    )
    # Entra ID's sign-in host (another cloud's, for a sovereign cloud).
    authority_host: str = Field(
        default="https://login.microsoftonline.com",
        validation_alias=AliasChoices("AUTHORITY_HOST"),
    )

    @field_validator("admin_aad_ids", "allowed_tenant_ids", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Environment values are comma- or space-separated lists of ids.
        # Ids are compared case-insensitively: Entra ID GUIDs come in either case.
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(part).strip().lower() for part in value if str(part).strip())
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # A typo fails at start-up, reported as configuration (ZoneInfo raises a KeyError,
        # which pydantic would not turn into a validation error).
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown IANA time zone {value!r}") from error
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_database_url(value)

    # Serving needs the bot's whole identity; a subclass for work that needs only its ids
    # (building the Teams app package) turns the check off.
    requires_credentials: ClassVar[bool] = True

    @model_validator(mode="after")
    def _credentials_complete(self) -> Settings:
        # Refuse at start-up what botbuilder would only refuse on the first reply.
        if not self.microsoft_app_id or not self.requires_credentials:
            return self
        missing = []
        if self.microsoft_app_type == "SingleTenant" and not self.microsoft_app_password:
            missing.append("MicrosoftAppPassword")
        if self.microsoft_app_type != "MultiTenant" and not self.microsoft_app_tenant_id:
            missing.append("MicrosoftAppTenantId")
        if missing:
            raise ValueError(
                f"MicrosoftAppType={self.microsoft_app_type} also needs {', '.join(missing)}"
            )
        return self

    @field_validator("reminders_at")
    @classmethod
    def _reminder_time(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "off":
            try:
                time.fromisoformat(value)
            except ValueError as error:
                raise ValueError('REMINDERS_AT must be a time such as 08:00, or "off"') from error
        return value

    @property
    def reminder_time(self) -> time | None:
        return None if self.reminders_at == "off" else time.fromisoformat(self.reminders_at)

    @field_validator("retention_purge_at")
    @classmethod
    def _purge_time(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "off":
            try:
                time.fromisoformat(value)
            except ValueError as error:
                raise ValueError(
                    'RETENTION_PURGE_AT must be a time such as 03:30, or "off"'
                ) from error
        return value

    @property
    def purge_time(self) -> time | None:
        if self.retention_purge_at == "off":
            return None
        return time.fromisoformat(self.retention_purge_at)

    @property
    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            outbox=timedelta(days=self.retention_outbox_days),
            dialog_state=timedelta(days=self.retention_dialog_state_days),
            session_notes_months=self.retention_session_notes_months,
            idea_people_years=self.retention_idea_people_years,
            idle_staff=timedelta(days=self.retention_idle_staff_days),
            audit_years=self.retention_audit_years,
        )

    @property
    def authentication_enabled(self) -> bool:
        return bool(self.microsoft_app_id)

    @property
    def manifest_app_id(self) -> str:
        """The Teams app's id: TEAMS_APP_ID, else the bot's app id."""
        return self.teams_app_id or self.microsoft_app_id

    @property
    def graph_available(self) -> bool:
        """Graph is used only when asked for and the bot has an identity to call it with."""
        return self.graph_enabled and self.authentication_enabled

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_admin(self, aad_object_id: str | None) -> bool:
        return aad_object_id is not None and aad_object_id.lower() in self.admin_aad_ids

    @property
    def tenants_allowed(self) -> frozenset[str]:
        """ALLOWED_TENANT_IDS; when empty, the bot's own tenant (a single-tenant or managed
        identity bot serves its tenant only). Empty here means any tenant: only with
        authentication off, or a legacy multi-tenant bot."""
        if self.allowed_tenant_ids:
            return self.allowed_tenant_ids
        if self.authentication_enabled and self.microsoft_app_type != "MultiTenant":
            return frozenset({self.microsoft_app_tenant_id.lower()})
        return frozenset()

    def is_tenant_allowed(self, tenant_id: str | None) -> bool:
        allowed = self.tenants_allowed
        if not allowed:
            return True
        return tenant_id is not None and tenant_id.lower() in allowed


def async_database_url(url: str) -> str:
    """Map plain SQLAlchemy URLs onto the asyncio drivers the bot uses."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith("postgresql+asyncpg://"):
        # asyncpg calls libpq's sslmode "ssl" (same values); Azure's portal shows sslmode=.
        url = re.sub(r"([?&])sslmode=", r"\1ssl=", url)
    return url


def botframework_config(settings: Settings) -> SimpleNamespace:
    """The attribute object botbuilder's ConfigurationBotFrameworkAuthentication reads."""
    if not settings.authentication_enabled:
        # No app id: authentication off (local development, the Agents Playground).
        # botbuilder only allows that with its MultiTenant credential factory.
        return SimpleNamespace(APP_ID="", APP_PASSWORD="", APP_TYPE="MultiTenant", APP_TENANTID="")
    config = SimpleNamespace(
        APP_ID=settings.microsoft_app_id,
        APP_PASSWORD=settings.microsoft_app_password,
        APP_TYPE=settings.microsoft_app_type,
        APP_TENANTID=settings.microsoft_app_tenant_id,
    )
    if settings.openid_metadata_url:
        # Setting any one endpoint switches botbuilder to its "parameterized" authentication,
        # which then needs every endpoint: the public cloud's, but for the metadata URL.
        config.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = settings.openid_metadata_url
        config.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = Endpoints.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
        config.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = (
            Endpoints.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
        )
        config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = Endpoints.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
        config.TO_CHANNEL_FROM_BOT_LOGIN_URL = Endpoints.TO_CHANNEL_FROM_BOT_LOGIN_URL
        config.OAUTH_URL = Endpoints.OAUTH_URL
        config.CALLER_ID = CallerIdConstants.public_azure_channel
    return config
