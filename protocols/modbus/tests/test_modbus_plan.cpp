// Poll planning: coalescing a map's registers into few read requests, the 125-register
// limit, and splitting a request the device refuses (exception 02).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocols/modbus/modbus_poll.h"

using namespace mp::modbus;

namespace doctest {
template <>
struct StringMaker<mp::modbus::ReadRequest> {
  static String convert(const mp::modbus::ReadRequest& r) {
    return ("{fc " + std::to_string(r.fc) + ", " + std::to_string(r.start) + ", " +
            std::to_string(r.count) + "}")
        .c_str();
  }
};
}  // namespace doctest

namespace {
std::vector<ReadRequest> ir(std::initializer_list<std::pair<uint16_t, uint16_t>> list) {
  std::vector<ReadRequest> v;
  for (auto [s, c] : list) v.push_back({4, s, c});
  return v;
}
}  // namespace

TEST_CASE("plan: SDM630 with the default gap of 10 registers needs 5 requests") {
  const MeterMap* sdm = find_map("sdm630");
  REQUIRE(sdm);
  const auto plan = plan_reads(*sdm);
  // 0x0000-0x0011 (V, A, W per phase) | 0x001E-0x0023 (PF per phase) |
  // 0x0034-0x0055 (totals, Hz, energies, demand) | 0x00EA-0x00F9 (THD) |
  // 0x0156-0x016B (energy totals and per phase)
  CHECK(plan == ir({{0, 18}, {30, 6}, {52, 34}, {234, 16}, {342, 22}}));
  size_t regs = 0;
  for (const auto& r : plan) regs += r.count;
  CHECK(regs == 96);  // 68 registers of data + 28 read through small holes
}

TEST_CASE("plan: gap setting changes the SDM630 plan") {
  const MeterMap* sdm = find_map("sdm630");
  REQUIRE(sdm);
  CHECK(plan_reads(*sdm, {12, 125}) == ir({{0, 36}, {52, 34}, {234, 16}, {342, 22}}));
  CHECK(plan_reads(*sdm, {0, 125}) == ir({{0, 18},
                                          {30, 6},
                                          {52, 2},
                                          {56, 2},
                                          {60, 4},
                                          {70, 6},
                                          {84, 2},
                                          {234, 6},
                                          {248, 2},
                                          {342, 2},
                                          {346, 18}}));
  // A huge gap is bounded by the 125-register limit (greedy: 234..357 is 124 registers,
  // adding 0x0166 would make 126).
  CHECK(plan_reads(*sdm, {1000, 125}) == ir({{0, 86}, {234, 124}, {358, 6}}));
  CHECK(plan_reads(*sdm, {1000, 50}) == ir({{0, 36}, {52, 34}, {234, 16}, {342, 22}}));
}

TEST_CASE("plan: function codes never mix; sorted input not required") {
  std::vector<Span> spans = {{3, 10, 2}, {4, 0, 2}, {3, 0, 2}, {4, 4, 2}, {3, 5, 1}};
  const auto plan = plan_reads(spans);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0] == ReadRequest{3, 0, 12});
  CHECK(plan[1] == ReadRequest{4, 0, 6});
}

TEST_CASE("plan: overlapping, duplicate, empty and oversized spans") {
  std::vector<Span> spans = {{3, 0, 4}, {3, 2, 2}, {3, 0, 4}, {3, 100, 0}, {3, 65534, 2}};
  CHECK(plan_reads(spans) == std::vector<ReadRequest>{{3, 0, 4}, {3, 65534, 2}});
  // A span longer than the limit is clamped to one request of the limit.
  CHECK(plan_reads({{3, 0, 200}}, {10, 125}) == std::vector<ReadRequest>{{3, 0, 125}});
  CHECK(plan_reads(std::vector<Span>{}).empty());
}

TEST_CASE("plan: every map plans within the limit and covers every register") {
  for (const MeterMap* m : all_maps()) {
    CAPTURE(std::string(m->type));
    const auto plan = plan_reads(*m);
    CHECK(!plan.empty());
    for (const auto& r : plan) CHECK((r.count >= 1 && r.count <= 125));
    for (const auto& s : map_spans(*m)) {
      bool covered = false;
      for (const auto& r : plan)
        covered = covered || (r.fc == s.fc && r.start <= s.start && r.end() >= s.end());
      CHECK(covered);
    }
  }
  // ABB: energies 0x5000 (8), per-phase energies 0x5460 (24), and the 0x5Bxx group is cut
  // by holes of 16 (before 0x5B2C) and 13 (before 0x5B3A) registers.
  CHECK(plan_reads(*find_map("abb")) ==
        std::vector<ReadRequest>{
            {3, 0x5000, 8}, {3, 0x5460, 24}, {3, 0x5B00, 28}, {3, 0x5B2C, 1}, {3, 0x5B3A, 4}});
  CHECK(plan_reads(*find_map("sbc")).size() == 1);
  CHECK(plan_reads(*find_map("sdm72")).size() == 3);
}

TEST_CASE("split: at the largest hole, then in the middle, then not at all") {
  const auto spans = map_spans(*find_map("sdm630"));
  ReadRequest a, b;
  // 52..85 holds 52,56,60,62,70,72,74,84; largest hole 76..83 (8 registers).
  REQUIRE(split_request({4, 52, 34}, spans, a, b));
  CHECK(a == ReadRequest{4, 52, 24});
  CHECK(b == ReadRequest{4, 84, 2});
  // 52..75: largest hole is 64..69 (6).
  REQUIRE(split_request(a, spans, a, b));
  CHECK(a == ReadRequest{4, 52, 12});
  CHECK(b == ReadRequest{4, 70, 6});
  // 70..75 is three adjacent floats: split in the middle (after the second).
  REQUIRE(split_request({4, 70, 6}, spans, a, b));
  CHECK(a == ReadRequest{4, 70, 4});
  CHECK(b == ReadRequest{4, 74, 2});
  // A single register cannot be split.
  CHECK_FALSE(split_request({4, 70, 2}, spans, a, b));
  // Spans of the other function code do not count.
  CHECK_FALSE(split_request({3, 0, 18}, spans, a, b));
}
