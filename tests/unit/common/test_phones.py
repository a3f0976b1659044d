"""Phone numbers in one written form (E.164), whatever way they were typed, read in the clinic's region."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from services.common import phones
from services.common.phones import PhoneNumber, e164, known_region, matching_form
from services.intake.settings import IntakeSettings
from services.notifications.settings import NotificationsSettings


@pytest.mark.parametrize(
    "typed",
    ["555-773-2000", "(555) 773-2000", "+15557732000", "+1 555 773 2000", "1-555-773-2000", "555.773.2000"],
)
def test_every_way_of_writing_a_us_number_is_one_e164_number(typed: str) -> None:
    assert e164(typed, "US") == "+15557732000"
    assert matching_form(typed, "US") == "+15557732000"


def test_a_national_number_is_read_in_the_given_region() -> None:
    assert e164("020 7946 0958", "GB") == "+442079460958"
    assert e164("+44 20 7946 0958", "US") == "+442079460958"  # a country code wins over the region


@pytest.mark.parametrize("typed", ["555-0100", "+15550100", "12", "call me", "+1 202 555 0123 4567 89"])
def test_a_number_that_is_not_a_possible_full_number_is_refused_without_repeating_it(typed: str) -> None:
    with pytest.raises(ValueError, match="phone number") as refused:
        e164(typed, "US")
    assert not any(character.isdigit() for character in str(refused.value))


def test_a_number_that_reads_as_no_full_number_is_matched_on_its_digits() -> None:
    assert matching_form("+1 (555) 0100", "US") == matching_form("+15550100", "US") == "+15550100"


def test_a_request_number_is_stored_in_e164_in_the_clinic_region() -> None:
    class Body(BaseModel):
        phone: PhoneNumber

    assert Body(phone="(202) 555-0123").phone == "+12025550123"
    phones.use_region("GB")
    try:
        assert Body(phone="020 7946 0958").phone == "+442079460958"
    finally:
        phones.use_region(phones.DEFAULT_REGION)
    with pytest.raises(ValidationError) as refused:
        Body(phone="555-0100")
    [error] = refused.value.errors()
    assert error["loc"] == ("phone",) and "0100" not in error["msg"]


def test_the_region_is_a_known_two_letter_code() -> None:
    assert known_region(" ca ") == "CA"
    with pytest.raises(ValueError, match="two-letter"):
        known_region("Narnia")


@pytest.mark.parametrize("settings", ["intake", "notifications"])
def test_an_unknown_clinic_phone_region_stops_the_service_naming_the_setting(settings: str) -> None:
    model = {"intake": IntakeSettings, "notifications": NotificationsSettings}[settings]
    assert model(_env_file=None).clinic_phone_region == "US"
    assert model(_env_file=None, clinic_phone_region="ca").clinic_phone_region == "CA"
    with pytest.raises(ValidationError, match="clinic_phone_region"):
        model(_env_file=None, clinic_phone_region="Narnia")
