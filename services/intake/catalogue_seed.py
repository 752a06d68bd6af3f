"""Dữ liệu mẫu: Thanh Hóa agencies and a procedure catalogue for the demo (embedded mode).

Plain data for seeding; nothing here is authoritative. Each procedure says whether its national
code was checked (``code_checked``); fees are demo values — the real ones are set by national
circulars and the provincial People's Council and must come from the province's catalogue.

Longer than a module should be, and kept whole: it is a table of data with no logic, read
top to bottom against its sources; split, the agencies and procedures would lose each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum

# The clock-start cut-off of procedures that are settled within the day [confirmed: per
# procedure; civil-status and certification rules say "after 15:00 → next working day"].
CUTOFF_15H = time(15, 0)

# From 1/7/2025 local government has two tiers (province, commune) and the departments were
# merged (e.g. Kế hoạch và Đầu tư into Tài chính, Tài nguyên và Môi trường with Nông nghiệp,
# Lao động - Thương binh và Xã hội into Nội vụ, Giao thông vận tải into Xây dựng)
# [unverified]. The seed follows that organisation and says it applies from that date.
SEED_EFFECTIVE_FROM = date(2025, 7, 1)

# Hours in a working day of processing time [confirmed for Thanh Hóa].
DAY = 8


class OnlineLevel(StrEnum):
    """Dịch vụ công trực tuyến: fully online (toàn trình) or partly (một phần)."""

    FULL = "full"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencySeed:
    """Cơ quan: identifier (Decision 20/2020/QĐ-TTg), name, parent and level (1 = province)."""

    code: str
    name: str
    parent_code: str | None
    level: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentSeed:
    """Thành phần hồ sơ: a required document, copies needed, whether the original is needed."""

    name: str
    copies: int = 1
    original_required: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcedureSeed:
    """Thủ tục hành chính as configured at the agency that receives it."""

    code: str  # national code, d.dddddd
    name: str
    sector: str  # lĩnh vực
    processing_hours: int  # working hours, 8 to a working day
    cutoff: time | None  # None: the clock starts at acceptance whatever the hour
    fee_vnd: int
    components: tuple[ComponentSeed, ...]
    online_level: OnlineLevel
    receiving_agency: str  # OrganId of the agency whose desk receives it
    code_checked: bool  # True: code seen in data taken from the national portal
    effective_from: date = SEED_EFFECTIVE_FROM

    @property
    def code_at_agency(self) -> str:
        """The procedure's code at its agency, e.g. ``1.001193.000.00.41.H56``."""
        return f"{self.code}.{self.receiving_agency}"


PROVINCE = "000.00.00.H56"
VAN_PHONG_UBND = "000.00.01.H56"
TRUNG_TAM_HCC = "000.01.01.H56"
SO_TU_PHAP = "000.00.11.H56"
SO_TAI_CHINH = "000.00.12.H56"
SO_XAY_DUNG = "000.00.13.H56"
SO_NONG_NGHIEP_MOI_TRUONG = "000.00.14.H56"
VP_DANG_KY_DAT_DAI = "000.01.14.H56"
CHI_NHANH_VPDKDD_1 = "001.01.14.H56"
SO_NOI_VU = "000.00.15.H56"
SO_GIAO_DUC = "000.00.16.H56"
SO_Y_TE = "000.00.17.H56"
PHUONG_HAC_THANH = "000.00.41.H56"
PHUONG_SAM_SON = "000.00.42.H56"

# Codes read right to left: H56 = Thanh Hóa (level 1), then the level-2 group (third), the
# level-3 group (second), the level-4 group (first, three digits). The level-2/3/4 numbers
# below are demo values [unverified]: the province's registry assigns the real ones.
# Wards are placed directly under the province (two tiers since 2025); with two digits a
# level holds at most 99 units, so a real deployment of ~170 communes and wards needs the
# numbering the 2025 amendment prescribes — keep codes as data.
AGENCIES: tuple[AgencySeed, ...] = (
    AgencySeed(code=PROVINCE, name="UBND tỉnh Thanh Hóa", parent_code=None, level=1),
    AgencySeed(
        code=VAN_PHONG_UBND, name="Văn phòng UBND tỉnh Thanh Hóa", parent_code=PROVINCE, level=2
    ),
    AgencySeed(
        code=TRUNG_TAM_HCC,
        name="Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa",
        parent_code=VAN_PHONG_UBND,
        level=3,
    ),
    AgencySeed(code=SO_TU_PHAP, name="Sở Tư pháp tỉnh Thanh Hóa", parent_code=PROVINCE, level=2),
    AgencySeed(
        code=SO_TAI_CHINH, name="Sở Tài chính tỉnh Thanh Hóa", parent_code=PROVINCE, level=2
    ),
    AgencySeed(
        code=SO_XAY_DUNG, name="Sở Xây dựng tỉnh Thanh Hóa", parent_code=PROVINCE, level=2
    ),
    AgencySeed(
        code=SO_NONG_NGHIEP_MOI_TRUONG,
        name="Sở Nông nghiệp và Môi trường tỉnh Thanh Hóa",
        parent_code=PROVINCE,
        level=2,
    ),
    AgencySeed(
        code=VP_DANG_KY_DAT_DAI,
        name="Văn phòng Đăng ký đất đai tỉnh Thanh Hóa",
        parent_code=SO_NONG_NGHIEP_MOI_TRUONG,
        level=3,
    ),
    AgencySeed(
        code=CHI_NHANH_VPDKDD_1,
        name="Chi nhánh Văn phòng Đăng ký đất đai số 1",
        parent_code=VP_DANG_KY_DAT_DAI,
        level=4,
    ),
    AgencySeed(code=SO_NOI_VU, name="Sở Nội vụ tỉnh Thanh Hóa", parent_code=PROVINCE, level=2),
    AgencySeed(
        code=SO_GIAO_DUC,
        name="Sở Giáo dục và Đào tạo tỉnh Thanh Hóa",
        parent_code=PROVINCE,
        level=2,
    ),
    AgencySeed(code=SO_Y_TE, name="Sở Y tế tỉnh Thanh Hóa", parent_code=PROVINCE, level=2),
    # Ward names after the 2025 reorganisation [unverified].
    AgencySeed(
        code=PHUONG_HAC_THANH, name="UBND phường Hạc Thành", parent_code=PROVINCE, level=2
    ),
    AgencySeed(code=PHUONG_SAM_SON, name="UBND phường Sầm Sơn", parent_code=PROVINCE, level=2),
)


def _c(name: str, copies: int = 1, original: bool = True) -> ComponentSeed:
    return ComponentSeed(name=name, copies=copies, original_required=original)


TO_KHAI_CCCD = "Giấy tờ tùy thân (CCCD/hộ chiếu) hoặc số định danh cá nhân"

# code_checked=True: the code/name pair was seen in data taken from the national public
# service portal. False: the code only has the right format, the procedure is real but its
# code must be looked up before use. Processing times follow the law named in the comment;
# where a law says "ngày" the seed counts working days.
PROCEDURES: tuple[ProcedureSeed, ...] = (
    # --- Hộ tịch (civil status), received by the commune/ward
    ProcedureSeed(
        code="1.001193",
        name="Thủ tục đăng ký khai sinh",
        sector="Hộ tịch",
        processing_hours=1 * DAY,  # within the day; after 15:00 the next working day
        cutoff=CUTOFF_15H,
        fee_vnd=0,  # Luật Hộ tịch art. 11: free when registered on time
        components=(
            _c("Tờ khai đăng ký khai sinh"),
            _c("Giấy chứng sinh hoặc văn bản của người làm chứng xác nhận về việc sinh"),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.000894",
        name="Thủ tục đăng ký kết hôn",
        sector="Hộ tịch",
        processing_hours=1 * DAY,  # up to 5 working days when facts must be verified
        cutoff=CUTOFF_15H,
        fee_vnd=0,
        components=(
            _c("Tờ khai đăng ký kết hôn"),
            _c("Giấy xác nhận tình trạng hôn nhân (khi đăng ký ở nơi không thường trú)"),
        ),
        online_level=OnlineLevel.PARTIAL,  # both parties sign the register in person
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.000656",
        name="Thủ tục đăng ký khai tử",
        sector="Hộ tịch",
        processing_hours=1 * DAY,
        cutoff=CUTOFF_15H,
        fee_vnd=0,
        components=(
            _c("Tờ khai đăng ký khai tử"),
            _c("Giấy báo tử hoặc giấy tờ thay thế Giấy báo tử"),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=PHUONG_SAM_SON,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.004873",
        name="Thủ tục cấp Giấy xác nhận tình trạng hôn nhân",
        sector="Hộ tịch",
        processing_hours=3 * DAY,
        cutoff=None,
        fee_vnd=10_000,
        components=(
            _c("Tờ khai cấp Giấy xác nhận tình trạng hôn nhân"),
            _c("Bản án, quyết định ly hôn đã có hiệu lực (nếu đã ly hôn)", original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.004884",
        name="Thủ tục đăng ký lại khai sinh",
        sector="Hộ tịch",
        processing_hours=5 * DAY,
        cutoff=None,
        fee_vnd=0,
        components=(
            _c("Tờ khai đăng ký lại khai sinh"),
            _c("Bản sao giấy tờ, tài liệu có nội dung liên quan đến việc khai sinh", original=False),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=PHUONG_SAM_SON,
        code_checked=True,
    ),
    ProcedureSeed(
        code="2.000806",
        name="Thủ tục đăng ký kết hôn có yếu tố nước ngoài",
        sector="Hộ tịch",
        processing_hours=15 * DAY,  # Luật Hộ tịch art. 38: 15 days
        cutoff=None,
        fee_vnd=1_000_000,
        components=(
            _c("Tờ khai đăng ký kết hôn"),
            _c("Giấy xác nhận tình trạng hôn nhân của người nước ngoài (hợp pháp hóa lãnh sự)"),
            _c("Giấy xác nhận của cơ sở y tế về tâm thần", original=True),
            _c("Bản sao hộ chiếu của người nước ngoài", original=False),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="2.000635",
        name="Thủ tục cấp bản sao trích lục hộ tịch",
        sector="Hộ tịch",
        processing_hours=1 * DAY,
        cutoff=CUTOFF_15H,
        fee_vnd=8_000,  # per copy
        components=(_c("Tờ khai cấp bản sao trích lục hộ tịch"),),
        online_level=OnlineLevel.FULL,
        receiving_agency=PHUONG_SAM_SON,
        code_checked=True,
    ),
    # --- Chứng thực (certification), Tư pháp sector, received by the commune/ward
    ProcedureSeed(
        code="2.000815",
        name=(
            "Thủ tục chứng thực bản sao từ bản chính giấy tờ, văn bản do cơ quan có thẩm quyền "
            "của Việt Nam cấp hoặc chứng nhận"
        ),
        sector="Chứng thực",
        processing_hours=1 * DAY,  # within the day; after 15:00 the next working day
        cutoff=CUTOFF_15H,
        fee_vnd=2_000,  # per page
        components=(
            _c("Bản chính giấy tờ, văn bản làm cơ sở để chứng thực bản sao"),
            _c("Bản sao cần chứng thực", original=False),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="2.000884",
        name="Thủ tục chứng thực chữ ký trong các giấy tờ, văn bản",
        sector="Chứng thực",
        processing_hours=1 * DAY,
        cutoff=CUTOFF_15H,
        fee_vnd=10_000,
        components=(
            _c(TO_KHAI_CCCD),
            _c("Giấy tờ, văn bản cần chứng thực chữ ký"),
        ),
        online_level=OnlineLevel.PARTIAL,  # the signer signs in front of the officer
        receiving_agency=PHUONG_SAM_SON,
        code_checked=True,
    ),
    # --- Đăng ký kinh doanh
    ProcedureSeed(
        code="1.001612",
        name="Thủ tục đăng ký thành lập hộ kinh doanh",
        sector="Thành lập và hoạt động của hộ kinh doanh",
        processing_hours=3 * DAY,
        cutoff=None,
        fee_vnd=100_000,
        components=(
            _c("Giấy đề nghị đăng ký hộ kinh doanh"),
            _c("Bản sao giấy tờ pháp lý của cá nhân chủ hộ kinh doanh", original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="2.001610",
        name="Thủ tục đăng ký thành lập doanh nghiệp tư nhân",
        sector="Thành lập và hoạt động của doanh nghiệp",
        processing_hours=3 * DAY,  # Luật Doanh nghiệp 2020 art. 26: 3 working days
        cutoff=None,
        fee_vnd=50_000,  # free when filed online
        components=(
            _c("Giấy đề nghị đăng ký doanh nghiệp"),
            _c("Bản sao giấy tờ pháp lý của cá nhân chủ doanh nghiệp tư nhân", original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_TAI_CHINH,
        code_checked=True,
    ),
    # --- Lao động (Sở Nội vụ since the 2025 merger)
    ProcedureSeed(
        code="2.001955",
        name="Thủ tục đăng ký nội quy lao động của doanh nghiệp",
        sector="Lao động",
        processing_hours=7 * DAY,  # Bộ luật Lao động 2019 art. 119: 7 working days
        cutoff=None,
        fee_vnd=0,
        components=(
            _c("Văn bản đề nghị đăng ký nội quy lao động"),
            _c("Nội quy lao động"),
            _c("Văn bản góp ý của tổ chức đại diện người lao động tại cơ sở (nếu có)", original=False),
            _c("Các văn bản quy định liên quan đến kỷ luật lao động, trách nhiệm vật chất", original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_NOI_VU,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.014199",
        name="Thủ tục cấp giấy phép lao động cho người lao động nước ngoài làm việc tại Việt Nam",
        sector="Việc làm",
        processing_hours=10 * DAY,
        cutoff=None,
        fee_vnd=600_000,
        components=(
            _c("Văn bản đề nghị cấp giấy phép lao động"),
            _c("Giấy chứng nhận sức khỏe"),
            _c("Phiếu lý lịch tư pháp hoặc văn bản xác nhận không phải người đang chấp hành án"),
            _c("Văn bản chứng minh nhà quản lý, chuyên gia hoặc lao động kỹ thuật", original=False),
            _c("Bản sao hộ chiếu còn giá trị", original=False),
            _c("Ảnh màu 4 cm x 6 cm", copies=2),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=SO_NOI_VU,
        code_checked=True,
    ),
    # --- Xây dựng
    ProcedureSeed(
        code="1.013225",
        name="Thủ tục cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        sector="Hoạt động xây dựng",
        processing_hours=15 * DAY,  # Luật Xây dựng art. 102: 15 days for a private house
        cutoff=None,
        fee_vnd=75_000,
        components=(
            _c("Đơn đề nghị cấp giấy phép xây dựng"),
            _c("Bản sao giấy tờ chứng minh quyền sử dụng đất", original=False),
            _c("Bản vẽ thiết kế xây dựng", copies=2),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=PHUONG_SAM_SON,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.009982",
        name="Thủ tục cấp chứng chỉ hành nghề hoạt động xây dựng hạng II, hạng III",
        sector="Hoạt động xây dựng",
        processing_hours=20 * DAY,
        cutoff=None,
        fee_vnd=300_000,
        components=(
            _c("Đơn đề nghị cấp chứng chỉ hành nghề"),
            _c("Ảnh màu 4 cm x 6 cm", copies=2),
            _c("Văn bằng do cơ sở đào tạo hợp pháp cấp", original=False),
            _c("Bản khai kinh nghiệm công việc chuyên môn"),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_XAY_DUNG,
        code_checked=False,
    ),
    # --- Đường bộ (Sở Xây dựng since the merger with Giao thông vận tải)
    ProcedureSeed(
        code="1.002861",
        name="Thủ tục cấp Giấy phép kinh doanh vận tải bằng xe ô tô",
        sector="Đường bộ",
        processing_hours=5 * DAY,
        cutoff=None,
        fee_vnd=200_000,
        components=(
            _c("Giấy đề nghị cấp Giấy phép kinh doanh vận tải bằng xe ô tô"),
            _c("Bản sao văn bằng, chứng chỉ của người trực tiếp điều hành vận tải", original=False),
            _c("Phương án kinh doanh vận tải bằng xe ô tô"),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_XAY_DUNG,
        code_checked=False,
    ),
    # --- Đất đai
    ProcedureSeed(
        code="1.012753",
        name=(
            "Thủ tục đăng ký đất đai, tài sản gắn liền với đất, cấp Giấy chứng nhận quyền sử "
            "dụng đất, quyền sở hữu tài sản gắn liền với đất lần đầu"
        ),
        sector="Đất đai",
        processing_hours=20 * DAY,
        cutoff=None,
        fee_vnd=100_000,
        components=(
            _c("Đơn đăng ký đất đai, tài sản gắn liền với đất"),
            _c("Giấy tờ về quyền sử dụng đất", original=False),
            _c("Chứng từ thực hiện nghĩa vụ tài chính (nếu có)", original=False),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=PHUONG_HAC_THANH,
        code_checked=True,
    ),
    ProcedureSeed(
        code="1.004227",
        name=(
            "Thủ tục đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với "
            "đất do chuyển nhượng, tặng cho, thừa kế"
        ),
        sector="Đất đai",
        processing_hours=10 * DAY,
        cutoff=None,
        fee_vnd=50_000,
        components=(
            _c("Đơn đăng ký biến động đất đai, tài sản gắn liền với đất"),
            _c("Giấy chứng nhận đã cấp"),
            _c("Hợp đồng, văn bản về chuyển quyền đã công chứng hoặc chứng thực"),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=CHI_NHANH_VPDKDD_1,
        code_checked=False,
    ),
    # --- Giáo dục
    ProcedureSeed(
        code="1.005092",
        name="Thủ tục cấp bản sao văn bằng, chứng chỉ từ sổ gốc",
        sector="Văn bằng, chứng chỉ",
        processing_hours=1 * DAY,  # within the day; after 15:00 the next working day
        cutoff=CUTOFF_15H,
        fee_vnd=0,
        components=(
            _c("Đơn đề nghị cấp bản sao văn bằng, chứng chỉ từ sổ gốc"),
            _c(TO_KHAI_CCCD, original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_GIAO_DUC,
        code_checked=False,
    ),
    # --- Y tế
    ProcedureSeed(
        code="1.012271",
        name=(
            "Thủ tục cấp mới giấy phép hành nghề khám bệnh, chữa bệnh đối với chức danh bác sỹ, "
            "y sỹ, điều dưỡng, hộ sinh"
        ),
        sector="Khám bệnh, chữa bệnh",
        processing_hours=30 * DAY,
        cutoff=None,
        fee_vnd=360_000,
        components=(
            _c("Đơn đề nghị cấp giấy phép hành nghề"),
            _c("Bản sao văn bằng chuyên môn", original=False),
            _c("Giấy xác nhận kết quả kiểm tra đánh giá năng lực hành nghề"),
            _c("Giấy chứng nhận đủ sức khỏe để hành nghề"),
            _c("Ảnh chân dung 4 cm x 6 cm", copies=2),
        ),
        online_level=OnlineLevel.PARTIAL,
        receiving_agency=SO_Y_TE,
        code_checked=False,
    ),
    # --- Tư pháp at the province
    ProcedureSeed(
        code="1.008713",
        name="Thủ tục thay đổi nội dung đăng ký hoạt động của Văn phòng công chứng",
        sector="Công chứng",
        processing_hours=5 * DAY,
        cutoff=None,
        fee_vnd=500_000,
        components=(
            _c("Đơn đề nghị thay đổi nội dung đăng ký hoạt động"),
            _c("Giấy tờ chứng minh nội dung thay đổi", original=False),
        ),
        online_level=OnlineLevel.FULL,
        receiving_agency=SO_TU_PHAP,
        code_checked=False,
    ),
)


def agency(code: str) -> AgencySeed:
    """The seeded agency with ``code`` (KeyError if absent)."""
    for item in AGENCIES:
        if item.code == code:
            return item
    raise KeyError(code)


def procedures_received_by(code: str) -> list[ProcedureSeed]:
    """Procedures whose desk is the agency ``code``."""
    return [procedure for procedure in PROCEDURES if procedure.receiving_agency == code]
