"""What the compliance app watches and its thresholds, in one value passed to `build_app`.

Every knob is a field so tests (and a second deployment for another city) can point the app
at other topics and contracts and shorten the timers, without the app reading globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams import topics


@dataclass(frozen=True)
class AppConfig:
    app_id: str = "citymesh-compliance"
    alerts_topic: str = topics.ALERTS
    compliance_topic: str = topics.COMPLIANCE
    usage_topic: str = topics.USAGE
    contracts_topic: str = topics.CONTROL_CONTRACTS
    # the operator's own delivery contracts: the app reads what the operator may read, nothing more
    uav_contract: str | None = "operator-uav"
    hotline_contract: str | None = "operator-hotline"
    # escalation: the same rule broken by the same subject for at least this long -> one incident
    escalate_after_s: float = 30.0
    # an incident closes (and a new one starts) after this long without a hit
    quiet_s: float = 30.0
    # lost link: an airborne drone (last height above airborne_m) silent for lost_link_s
    lost_link_s: float = 10.0
    airborne_m: float = 5.0
    # hotline surge: more than surge_max tickets of one category in one district per window
    surge_max: int = 20
    surge_window_s: float = 600.0
    # metering: usage per contract per hour, published every flush_s
    usage_window_s: int = 3600
    flush_s: float = 5.0
    metrics_port: int = 0

    @property
    def uav_topic(self) -> str | None:
        return topics.delivery(self.uav_contract) if self.uav_contract else None

    @property
    def hotline_topic(self) -> str | None:
        return topics.delivery(self.hotline_contract) if self.hotline_contract else None
