"""Request and response bodies of intake's API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Applicant(Strict):
    full_name: str = Field(min_length=1, max_length=200)
    id_number: str | None = Field(default=None, max_length=20)
    phone: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)


class DossierSubmission(Strict):
    agency: str = Field(pattern=r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$", examples=["000.00.00.H56"])
    procedure_code: str = Field(min_length=3, max_length=40, examples=["1.001193"])
    applicant: Applicant


class DossierOut(BaseModel):
    code: str
    agency: str
    procedure_code: str
    status: int
    applicant: Applicant
    received_at: datetime
