"""The console's settings (``LIENTHONG_CONSOLE_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings, load_settings


class ConsoleSettings(Settings):
    # --- where the API is ----------------------------------------------------------------
    gateway_url: str | None = Field(
        default=None,
        description="the gateway as the console reaches it server-side; unset = public_base_url "
        "(set it when the public URL is not reachable from inside, e.g. http://gateway:8000)",
    )
    api_timeout_seconds: float = Field(default=60.0, description="longest wait for one API call")
    # --- sessions ------------------------------------------------------------------------
    session_idle_minutes: float = Field(default=30.0, description="a session unused this long is closed")
    session_cookie: str = "lt_session"
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag on cookies; unset = on in production and whenever public_base_url is https",
    )
    # --- log-in through an external OIDC provider (authorization code + PKCE) -----------------
    oidc_issuer: str | None = Field(
        default=None,
        description="the provider's issuer URL; set, the log-in page offers it (its "
        "/.well-known/openid-configuration names the endpoints). Tokens are verified like every "
        "part's: jwks_url, token_issuer, token_audience, token_claim_map",
    )
    oidc_client_id: str = Field(default="lienthong-console", description="the console's client id there")
    oidc_client_secret: str | None = Field(default=None, description="for a confidential client; PKCE either way")
    oidc_scopes: str = "openid profile"
    # --- what people see -----------------------------------------------------------------
    default_locale: str = Field(default="vi", description="vi or en")
    timezone: str = "Asia/Ho_Chi_Minh"
    page_size: int = Field(default=20, ge=1, le=200, description="rows per page in lists")
    max_upload_mb: int = Field(default=20, ge=1, description="largest scan the desk may upload")
    lookup_rate_per_minute: int = Field(
        default=30, ge=1, description="public look-ups per client address and minute on the console"
    )

    @property
    def api_base(self) -> str:
        return (self.gateway_url or self.public_base_url).rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.environment == "production" or self.public_base_url.startswith("https://")


def get_settings(**overrides: object) -> ConsoleSettings:
    return load_settings(ConsoleSettings, "console", **overrides)
