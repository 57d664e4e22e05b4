"""Configuration: ``load(path)`` / ``parse(mapping)`` into the frozen ``Settings`` tree.

``schema`` holds the dataclasses, ``reader`` the path-aware reader whose errors name the YAML
path, ``loader`` the parsing of each section.
"""

from nitroproxy.config.errors import ConfigError, StartupError
from nitroproxy.config.loader import interpolate, load, parse
from nitroproxy.config.schema import (
    AuthSettings,
    CacheSettings,
    ClientTimeouts,
    Deployment,
    KeySettings,
    LimitSettings,
    LoggingSettings,
    MetricsSettings,
    MockProviderSettings,
    ModelSettings,
    PrivacySettings,
    ProviderSettings,
    RetentionSettings,
    RoutingSettings,
    ServerLimits,
    ServerSettings,
    Settings,
    StatsSettings,
    StorageSettings,
    Timeouts,
    TLSSettings,
    TokenSettings,
    TracingSettings,
    UISettings,
    UpstreamSettings,
)

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "ClientTimeouts",
    "ConfigError",
    "Deployment",
    "KeySettings",
    "LimitSettings",
    "LoggingSettings",
    "MetricsSettings",
    "MockProviderSettings",
    "ModelSettings",
    "PrivacySettings",
    "ProviderSettings",
    "RetentionSettings",
    "RoutingSettings",
    "ServerLimits",
    "ServerSettings",
    "Settings",
    "StartupError",
    "StatsSettings",
    "StorageSettings",
    "TLSSettings",
    "Timeouts",
    "TokenSettings",
    "TracingSettings",
    "UISettings",
    "UpstreamSettings",
    "interpolate",
    "load",
    "parse",
]
