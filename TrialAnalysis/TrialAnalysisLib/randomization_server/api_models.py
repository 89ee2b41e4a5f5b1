"""Request and response bodies of the JSON API (pydantic): bounded fields, no extra keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class Strict(BaseModel):
    """Base: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    username: str
    role: str
    site: str | None
    csrf_token: str


class RandomizeRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"screening_id": "S00001", "centre": "C1", "sex": "F", "age": 68, "lbp_duration_months": 14,
                 "odi": 38, "goutallier_grade": 2, "nsaid_contraindication": False, "prior_spine_surgery": False,
                 "specific_pathology": False, "consent": True}
            ]
        },
    )  # fmt: skip
    screening_id: str = Field(pattern=ID, description="screening log identifier, e.g. S00042")
    centre: str = Field(pattern=r"^[A-Za-z0-9_]{1,16}$", description="the investigator's own site")
    sex: Literal["F", "M"]
    age: int = Field(ge=18, le=120, description="years")
    lbp_duration_months: float = Field(ge=0, le=1200, description="duration of low-back pain, months")
    odi: float = Field(ge=0, le=100, description="Oswestry Disability Index at screening")
    goutallier_grade: int = Field(ge=0, le=4, description="multifidus L4-L5")
    nsaid_contraindication: bool
    prior_spine_surgery: bool
    specific_pathology: bool
    consent: bool


class Randomization(BaseModel):
    participant_id: str
    screening_id: str
    centre: str
    sex: str
    stratum: str
    sequence_in_stratum: int
    block_id: str
    arm: str
    randomized_at: str


class ParticipantView(BaseModel):
    participant_id: str
    screening_id: str
    centre: str
    sex: str
    stratum: str
    sequence_in_stratum: int
    block_id: str
    randomized_at: str
    randomized_by: str
    arm: str | None = Field(description="arm name, or null when the viewer is blinded (see arm_code)")
    arm_code: str
    unblinded: bool


class ListUpload(Strict):
    csv: str = Field(min_length=1, max_length=20_000_000, description="the list file's text, unchanged")
    sha256: str = Field(
        min_length=64, max_length=400, description="contents of the .sha256 file, or the digest"
    )
    filename: str = Field(default="allocation.csv", max_length=255)


class SiteCreate(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9_]{1,16}$")
    name: str = Field(min_length=1, max_length=200)


class UserCreate(Strict):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{2,64}$")
    password: str = Field(min_length=12, max_length=256)
    role: Literal["admin", "statistician", "investigator", "monitor"]
    site: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,16}$")


class UserActive(Strict):
    active: bool


class PasswordChange(Strict):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=12, max_length=256)


class UnblindRequest(Strict):
    reason: str = Field(min_length=10, max_length=2000)


class OfflineUnblinding(Strict):
    reason: str = Field(min_length=10, max_length=2000)
    check_code: str = Field(pattern=r"^[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$")


class TrialUnblind(Strict):
    confirm: str = Field(max_length=64, description="must be exactly 'UNBLIND TRIAL'")


class RefusalBody(BaseModel):
    detail: str
    code: str
