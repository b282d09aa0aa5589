"""ISO 4217 currencies and their minor-unit exponents.

Only currencies with a fixed number of minor units are listed: funds (XAU, XDR, ...) and
codes without a minor unit definition cannot hold a wallet.
"""

from types import MappingProxyType

_EXPONENTS = {
    # exponent 0
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # exponent 3
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # exponent 4
    "CLF": 4,
    "UYW": 4,
}
_TWO_DECIMALS = (  # noqa: SIM905 - the ISO list reads best as text
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW "
    "ZWG"
).split()

EXPONENTS = MappingProxyType({**dict.fromkeys(_TWO_DECIMALS, 2), **_EXPONENTS})


def exponent(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 code; KeyError for an unknown code."""
    return EXPONENTS[code]


def is_known(code: str) -> bool:
    return code in EXPONENTS
