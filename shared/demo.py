"""The demo deployment (``LIENTHONG_DEMO=true``, never production): the agencies that receive or
decide the demo procedures and the people who work at each, the same for every part that seeds
them — the gateway their accounts, signing their seals and leaders' certificates, document
their number series.

Logins are ``<role>.<agency>``: the role, a dot, then the agency's OrganId without its province
(the last group) and without its leading all-zero groups — ``leader.41`` works at
``000.00.41.H56``, ``clerk.001.01.14`` at ``001.01.14.H56``. The province's own people keep the
bare role names (``desk_officer``, ``specialist``, ``leader``, ``clerk`` at ``000.00.00.H56``).
Every demo account's password is ``demo`` (``LIENTHONG_DEMO_PASSWORD``); every demo signing PIN
is the signing part's ``demo_pin_secret`` (``123456``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROVINCE = "000.00.00.H56"

#: the roles every demo agency has people for, with the clearance (secrecy level) each holds
AGENCY_ROLES: dict[str, int] = {"desk_officer": 0, "specialist": 1, "leader": 3, "clerk": 3}


@dataclass(frozen=True, slots=True)
class DemoPerson:
    username: str
    full_name: str
    role: str
    agency: str
    clearance: int


@dataclass(frozen=True, slots=True)
class DemoAgency:
    """Cơ quan mẫu: its OrganId, its full name (as on its seal, at most 64 characters), and the
    names and position of its people."""

    code: str
    name: str
    leader_position: str
    names: tuple[str, str, str, str]  # desk officer, specialist, leader, clerk

    @property
    def people(self) -> tuple[DemoPerson, ...]:
        return tuple(
            DemoPerson(username(role, self.code), name, role, self.code, clearance)
            for (role, clearance), name in zip(AGENCY_ROLES.items(), self.names, strict=True)
        )

    @property
    def leader(self) -> DemoPerson:
        return next(p for p in self.people if p.role == "leader")


def agency_slug(code: str) -> str:
    """``000.00.41.H56`` → ``41``, ``001.01.14.H56`` → ``001.01.14``, the province → ``""``."""
    groups = code.split(".")[:-1]
    while groups and not groups[0].strip("0"):
        groups.pop(0)
    return ".".join(groups)


def username(role: str, code: str) -> str:
    slug = agency_slug(code)
    return f"{role}.{slug}" if slug else role


DEMO_AGENCIES: tuple[DemoAgency, ...] = (
    DemoAgency(
        PROVINCE,
        "Ủy ban nhân dân tỉnh Thanh Hóa",
        "Chủ tịch",
        ("Lê Văn Tiếp", "Trần Thị Chuyên", "Phạm Văn Đức", "Hoàng Thị Thư"),
    ),
    DemoAgency(
        "000.00.11.H56",
        "Sở Tư pháp tỉnh Thanh Hóa",
        "Giám đốc",
        ("Nguyễn Thị Lan", "Trịnh Văn Luật", "Lê Quang Pháp", "Đỗ Thị Hằng"),
    ),
    DemoAgency(
        "000.00.12.H56",
        "Sở Tài chính tỉnh Thanh Hóa",
        "Giám đốc",
        ("Phạm Thị Ngân", "Vũ Văn Khoản", "Nguyễn Hữu Tài", "Lê Thị Quỹ"),
    ),
    DemoAgency(
        "000.00.13.H56",
        "Sở Xây dựng tỉnh Thanh Hóa",
        "Giám đốc",
        ("Hoàng Văn Móng", "Trần Thị Kiến", "Mai Xuân Dựng", "Lường Thị Gạch"),
    ),
    DemoAgency(
        "000.00.15.H56",
        "Sở Nội vụ tỉnh Thanh Hóa",
        "Giám đốc",
        ("Đinh Thị Vụ", "Cao Văn Chức", "Lê Đình Nội", "Bùi Thị Hồ"),
    ),
    DemoAgency(
        "000.00.16.H56",
        "Sở Giáo dục và Đào tạo tỉnh Thanh Hóa",
        "Giám đốc",
        ("Ngô Thị Học", "Phan Văn Giảng", "Trương Minh Giáo", "Lý Thị Bảng"),
    ),
    DemoAgency(
        "000.00.17.H56",
        "Sở Y tế tỉnh Thanh Hóa",
        "Giám đốc",
        ("Tạ Thị Thuốc", "Đoàn Văn Khám", "Hà Thị Y", "Kiều Văn Dược"),
    ),
    DemoAgency(
        "000.00.41.H56",
        "Ủy ban nhân dân phường Hạc Thành",
        "Chủ tịch",
        ("Lê Thị Hạc", "Nguyễn Văn Hộ", "Trần Văn Thành", "Phạm Thị Tịch"),
    ),
    DemoAgency(
        "000.00.42.H56",
        "Ủy ban nhân dân phường Sầm Sơn",
        "Chủ tịch",
        ("Vũ Thị Biển", "Hoàng Văn Sóng", "Đặng Văn Sơn", "Lê Thị Cát"),
    ),
    DemoAgency(
        "001.01.14.H56",
        "Chi nhánh Văn phòng Đăng ký đất đai số 1",
        "Giám đốc",
        ("Nguyễn Thị Thửa", "Trần Văn Địa", "Lê Văn Chính", "Phạm Thị Sổ"),
    ),
)


def demo_agency(code: str) -> DemoAgency:
    """The demo agency ``code`` (KeyError if it is not one)."""
    for agency in DEMO_AGENCIES:
        if agency.code == code:
            return agency
    raise KeyError(code)


def demo_people() -> tuple[DemoPerson, ...]:
    """Every demo agency's people, the province's first."""
    return tuple(person for agency in DEMO_AGENCIES for person in agency.people)
