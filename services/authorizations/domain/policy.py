"""The utilization-review policy: the clinic's closures, the codes an authorization covers by default, and each
payer's rules (lead time, review interval, certification), validated at load with clear errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.policy_file import load_policy_file
from stepwise_contract import CareLevel

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policy" / "default.yaml"
PAYER_ID = r"^[a-z0-9][a-z0-9_.-]{0,49}$"
"""A payer as authorizations name it: an id of the clinic's payer policy, never free text."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CertificationRule(Strict):
    min_hours_per_week: float = Field(gt=0)
    recertify_every_months: int = Field(ge=1, le=12)
    source: str


class PayerRules(Strict):
    name: str
    review_lead_business_days: int | None = Field(default=None, ge=0, le=30)
    review_interval_days: int | None = Field(default=None, ge=1, le=365)
    certification: CertificationRule | None = None
    source: str | None = None


class UrPolicy(Strict):
    version: str
    closures: frozenset[date] = frozenset()
    default_codes: dict[CareLevel, list[str]]
    payers: dict[str, PayerRules] = Field(default_factory=dict)

    @field_validator("payers")
    @classmethod
    def _lower_case_ids(cls, payers: dict[str, PayerRules]) -> dict[str, PayerRules]:
        for payer in payers:
            if payer != payer.lower():
                raise ValueError(f"payer id {payer!r}: lower case (authorizations name it so)")
        return payers

    def payer(self, payer: str) -> PayerRules | None:
        return self.payers.get(payer)

    def codes(self, level: CareLevel) -> list[str]:
        return list(self.default_codes.get(level, []))


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> UrPolicy:
    return load_policy_file(path, UrPolicy, "utilization-review policy")
