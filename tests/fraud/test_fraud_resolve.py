"""Entity resolution: the spellings a claims system really produces map to one key."""

from __future__ import annotations

import doctest

import pytest

import fraudring.resolve

from fraudring.resolve import kind_of_column, normalize_address, normalize_bank, normalize_name, normalize_phone, person_key


@pytest.mark.parametrize("raw", [
    "13800138000", "+86 138-0013-8000", "+86 13800138000", "0086 138 0013 8000", "8613800138000",
    "(+86) 138.0013.8000", "１３８００１３８０００",  # full-width digits from a Chinese IME
])
def test_mobile_formats_resolve_to_one_number(raw):
    assert normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw,expected", [
    ("021-6123 4567", "02161234567"),
    ("+86 21 6123 4567", "02161234567"),  # international form drops the trunk 0
    ("", None), ("unknown", None), ("000000", None), ("12345", None),
])
def test_landlines_and_placeholders(raw, expected):
    assert normalize_phone(raw) == expected


def test_a_different_mobile_stays_different():
    assert normalize_phone("+86 138 0013 8001") != normalize_phone("13800138000")


@pytest.mark.parametrize("raw", [
    "No. 88 Nanjing Road, Apt 502", "88 NANJING RD unit 502", "88  Nanjing Rd. Rm 502", "88 nanjing road #502",
    "No.88 Nanjing Rd., Room 502", "#88 Nanjing Road Flat 502", "88 Nanjing Road unit 502, Shanghai",
])
def test_address_variants_resolve_to_one_key(raw):
    assert normalize_address(raw) == "88 nanjing road unit 502"


def test_claims_book_address_variants():
    canonical = "No. 1190 Nanjing West Road, Baoshan District, Shanghai"
    variants = [canonical, "No. 1190 Nanjing West Rd, Baoshan District, Shanghai",
                "NO. 1190 NANJING WEST ROAD, BAOSHAN Dist., SHANGHAI", "1190 Nanjing West Road, Baoshan District",
                "no. 1190 nanjing west rd., baoshan district, shanghai"]
    assert {normalize_address(v) for v in variants} == {"1190 nanjing west road baoshan district"}


def test_address_saint_versus_street_and_distinct_units():
    assert normalize_address("7 St Mary St") == "7 saint mary street"
    assert normalize_address("12 Main St W") == "12 main street west"
    assert normalize_address("88 Nanjing Rd Apt 502") != normalize_address("88 Nanjing Rd Apt 503")
    assert normalize_address("南京路88号502室") == "南京 road 88 502 unit"


@pytest.mark.parametrize("raw", ["Zhang Wei", "ZHANG  WEI", " zhang wei ", "ZhangWei", "Zhang-Wei"])
def test_name_spacing_and_case(raw):
    assert normalize_name(raw) == "zhangwei"


def test_name_order_and_cjk():
    assert normalize_name("张 伟") == normalize_name("张伟") == "张伟"
    assert normalize_name("Wei Zhang") != normalize_name("Zhang Wei")  # order kept on purpose


def test_bank_accounts_and_person_keys():
    assert normalize_bank("6222 0212 3456 7890") == normalize_bank("6222-0212-3456-7890") == "6222021234567890"
    assert normalize_bank("gb82 west 1234 5698 7654 32") == "GB82WEST12345698765432"
    assert normalize_bank("0000 0000") is None
    assert person_key("Zhang  Wei", phone="+86 138 0013 8000") == person_key("zhang wei", phone="13800138000")
    assert person_key("Zhang Wei") is None  # a common name alone is not an identity
    assert person_key("Zhang Wei", bank="6222 0212 3456 7890") == "aeghinwz|6222021234567890"
    assert person_key("Xiu Ying Zhao", phone="13800138000") == person_key("ZHAO  Xiu Ying", phone="+8613800138000")


@pytest.mark.parametrize("col,kind", [
    ("third_party_phone", "phone"), ("insured_address", "address"), ("insured_bank_account", "bank"),
    ("insured_vehicle_id", "vehicle"), ("tow_company", "tow"), ("claimant_name", "name"), ("broker", "broker"),
])
def test_column_kinds(col, kind):
    assert kind_of_column(col) == kind


def test_resolve_doctests():
    result = doctest.testmod(fraudring.resolve)
    assert result.failed == 0 and result.attempted >= 10
