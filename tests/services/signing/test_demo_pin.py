"""Where a newcomer learns the demo signing PIN and the demo people (issue #12 items 2 and 6):
the start banner and the README say what the code uses."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lienthong.embedded import _signing_lines
from services.signing.config import DEV_DEMO_PIN, get_settings
from services.signing.softkeys import SOFTWARE_KEYSTORE
from services.signing.state import SigningState
from shared.demo import DEMO_AGENCIES, agency_slug, demo_people, username

README = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")


def _suite(description: str) -> SimpleNamespace:
    keystore = SimpleNamespace(token=SimpleNamespace(description=description))
    state = SigningState(keystore=keystore, pins=None, documents=None)  # type: ignore[arg-type]
    runtime = SimpleNamespace(settings=get_settings(), state=state)
    return SimpleNamespace(apps={"signing": SimpleNamespace(state=SimpleNamespace(runtime=runtime))})


def test_the_banner_gives_the_demo_pin_and_flags_software_keys() -> None:
    with_token = _signing_lines(_suite("pkcs11"))
    assert with_token == [f"Signing PIN of every demo certificate (header X-Signing-PIN): {DEV_DEMO_PIN}"]
    with_files = _signing_lines(_suite(SOFTWARE_KEYSTORE))
    assert len(with_files) == 2 and with_files[1].startswith("WARNING: signing keys are in the software keystore")


def test_the_readme_gives_the_demo_pin_and_the_naming_of_demo_people() -> None:
    assert f"(header `X-Signing-PIN`) is `{DEV_DEMO_PIN}`" in README
    assert "`leader.41` at `000.00.41.H56`" in README and "`clerk.001.01.14` at" in README
    assert "software (development only)" in README and SOFTWARE_KEYSTORE == "software (development only)"


def test_demo_logins_follow_the_documented_rule() -> None:
    assert agency_slug("000.00.41.H56") == "41" and agency_slug("001.01.14.H56") == "001.01.14"
    assert agency_slug("000.01.01.H56") == "01.01" and agency_slug("000.00.00.H56") == ""
    assert username("leader", "000.00.41.H56") == "leader.41" and username("clerk", "000.00.00.H56") == "clerk"
    people = demo_people()
    assert len({p.username for p in people}) == len(people) == 4 * len(DEMO_AGENCIES)
    assert all(len(a.name) <= 64 for a in DEMO_AGENCIES)  # a certificate's O and CN
