// CPU placement of the workers (general.realtime_cpu): supervisor::plan_cpus is pure.
#include <doctest/doctest.h>

#include "supervisor/supervisor.h"

using mp::supervisor::cpu_list;
using mp::supervisor::plan_cpus;
using V = std::vector<int>;

TEST_CASE("auto: the last usable CPU for acquire and actuate, the rest for the others") {
  auto p = plan_cpus({0, 1}, mp::config::General::kRealtimeCpuAuto);
  CHECK(p.realtime == V{1});
  CHECK(p.others == V{0});
  CHECK(p.warning.empty());
  p = plan_cpus({0, 1, 2, 3}, mp::config::General::kRealtimeCpuAuto);
  CHECK(p.realtime == V{3});
  CHECK(p.others == V{0, 1, 2});
  // a supervisor started under taskset 2,5: only those are used
  p = plan_cpus({2, 5}, mp::config::General::kRealtimeCpuAuto);
  CHECK(p.realtime == V{5});
  CHECK(p.others == V{2});
}

TEST_CASE("auto on one CPU, and -1: nobody is pinned") {
  auto p = plan_cpus({0}, mp::config::General::kRealtimeCpuAuto);
  CHECK(p.realtime.empty());
  CHECK(p.others.empty());
  p = plan_cpus({0, 1, 2, 3}, -1);
  CHECK(p.realtime.empty());
  CHECK(p.others.empty());
  CHECK(p.warning.empty());
}

TEST_CASE("an explicit CPU") {
  auto p = plan_cpus({0, 1, 2, 3}, 0);
  CHECK(p.realtime == V{0});
  CHECK(p.others == V{1, 2, 3});
  // the only CPU: the real-time workers are pinned to it, the others are left alone
  p = plan_cpus({0}, 0);
  CHECK(p.realtime == V{0});
  CHECK(p.others.empty());
}

TEST_CASE("a CPU the supervisor may not use: a warning naming it, nobody pinned") {
  auto p = plan_cpus({0, 1}, 5);
  CHECK(p.realtime.empty());
  CHECK(p.others.empty());
  CHECK(p.warning ==
        "general.realtime_cpu = 5 is not a CPU this supervisor may use (0,1): "
        "workers are not pinned");
}

TEST_CASE("cpu_list") {
  CHECK(cpu_list({}) == "");
  CHECK(cpu_list({3}) == "3");
  CHECK(cpu_list({0, 1}) == "0,1");
  CHECK(cpu_list({0, 1, 2, 5}) == "0-2,5");
  CHECK(cpu_list({0, 2, 3, 4, 7, 8}) == "0,2-4,7,8");
}

TEST_CASE("real-time workers") {
  CHECK(mp::supervisor::is_realtime_worker("acquire"));
  CHECK(mp::supervisor::is_realtime_worker("actuate"));
  CHECK_FALSE(mp::supervisor::is_realtime_worker("process"));
  CHECK_FALSE(mp::supervisor::is_realtime_worker("upload"));
  CHECK_FALSE(mp::supervisor::is_realtime_worker("serve"));
}
