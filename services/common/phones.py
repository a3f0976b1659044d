"""Phone numbers in one written form, E.164 (``+12025550123``), however they were typed: what intake stores,
what texts are sent to, and what a STOP reply is matched on.

A number written without its country code (``(202) 555-0123``) is read as a number of the clinic's region,
``CLINIC_PHONE_REGION`` (default ``US``), in intake and notifications alike. An error never repeats the number.
"""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

DEFAULT_REGION = "US"


def known_region(region: str) -> str:
    """``region`` as a two-letter region code the phone-number library knows (upper case)."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("not a known phone region: give a two-letter country code such as US or CA")
    return code


PhoneRegion = Annotated[
    str,
    AfterValidator(known_region),
    Field(description="Two-letter region whose national numbers are read without a country code, e.g. US."),
]

_clinic_region = DEFAULT_REGION


def use_region(region: str) -> None:
    """Read national numbers in requests as numbers of ``region`` from now on (set at start-up)."""
    global _clinic_region  # noqa: PLW0603 - one clinic region per process, like its clock
    _clinic_region = known_region(region)


def e164(number: str, region: str | None = None) -> str:
    """``number`` in E.164. Raises ValueError (naming no digits) unless it is a possible full number of its
    region: a local number without its area code is not one."""
    try:
        parsed = phonenumbers.parse(number, region or _clinic_region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if phonenumbers.is_possible_number_with_reason(parsed) != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise ValueError("not a full phone number: give the area code (and the country code outside the clinic's)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def matching_form(number: str, region: str) -> str:
    """The form two writings of one number share: E.164 where it reads as a full number, else ``+`` and its
    digits (what numbers were matched on before they were normalised)."""
    try:
        return e164(number, region)
    except ValueError:
        return "+" + "".join(character for character in number if character.isdigit())


def _in_the_clinic_region(number: str) -> str:
    try:
        return e164(number)
    except ValueError as error:  # a rule no schema keyword states: its own type, in the API's 422 and document
        raise PydanticCustomError("phone_number", str(error)) from None


PhoneNumber = Annotated[
    str,
    Field(
        min_length=3,
        max_length=32,
        examples=["+12025550123"],
        description="A full number, stored in E.164: +1 202-555-0123 or, in the clinic's region "
        "(CLINIC_PHONE_REGION), (202) 555-0123.",
    ),
    AfterValidator(_in_the_clinic_region),
]
"""A phone number in a request: stored in E.164; one that is not a possible full number is a 422 of type
``phone_number``."""
PHONE_RULE = "each phone number is a possible full number: its area code, and its country code outside the clinic's"
"""The rule an operation that takes a phone number has beyond its schema (``services.common.schemas.beyond_schema``)."""
